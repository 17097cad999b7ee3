"""``studies``, ``trials list|show|export`` and ``pareto`` on a store filled with synthetic rows.

The rows go in through store.py's own models (no training, no timing), so every expected value
below is computed from what was written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
from click.testing import CliRunner

from edgeexplore import store
from edgeexplore.analysis import query
from edgeexplore.cli import cli
from edgeexplore.config import ArchConfig, StageConfig
from edgeexplore.store import db

N_TRIALS = 60


def random_arch(rng: random.Random) -> ArchConfig:
    stages = []
    for i in range(4):
        head_dim = rng.choice([16, 32])
        width = head_dim * rng.choice([1, 2, 3, 4]) * (2 ** i)
        block = rng.choice(["lgl", "lgl", "sra", "conv"])
        options = {}
        if block == "lgl":
            options = {"local_agg": rng.choice(["conv", "lsa"])}
        stages.append(StageConfig(
            depth=rng.randint(1, 3), width=width, heads=width // head_dim,
            mlp_ratio=rng.choice([2.0, 4.0]), sample_rate=rng.choice([1, 2]) if i < 3 else 1,
            block=block, options=options,
        ))
    return ArchConfig(stages=tuple(stages), resolution=(64, 64), num_classes=10)


def fill_store(url: str, n: int = N_TRIALS, seed: int = 0) -> list[dict]:
    """Write ``n`` synthetic trials (two studies) through the ORM; return what was written."""
    rng = random.Random(seed)
    written = []
    with db.session_scope(url) as s:
        env = store.get_or_create_environment(s)
        for i in range(n):
            cfg = random_arch(rng)
            flops = sum(st.depth * st.width ** 2 * 9 * (64 // (4 * 2 ** k)) ** 2
                        for k, st in enumerate(cfg.stages))
            params = sum(st.depth * st.width ** 2 * 12 for st in cfg.stages)
            cost = SimpleNamespace(params=params, flops=flops, activations=flops // 50,
                                   per_stage={"stem": 1000, "stage1": flops // 4})
            store.upsert_architecture(s, cfg, cost)
            study = "alpha" if i % 3 else "beta"
            state = store.COMPLETE if i % 10 != 7 else store.INFEASIBLE
            acc = 0.35 + 0.4 * (1 - math.exp(-flops / 2e7)) + rng.uniform(-0.05, 0.05)
            lat = 0.5 + flops / 1e7 * rng.uniform(0.8, 1.25)
            row = store.TrialResult(
                study=study, number=i, arch_hash=cfg.hash, state=state, seed=0,
                accuracy=acc if state == store.COMPLETE else None,
                latency_ms=lat if state == store.COMPLETE else None,
                latency_p90_ms=lat * 1.1 if state == store.COMPLETE else None,
                flops=flops, params=params, backend="torch-cpu", resolution="64x64",
                data="synthetic", epochs=3, environment_id=env.id,
                reason=None if state == store.COMPLETE else "params above the limit",
                curve=json.dumps([{"epoch": e, "train_loss": 2.0 - 0.3 * e,
                                   "val_acc": acc * (e + 1) / 3, "seconds": 1.5}
                                  for e in range(3)]),
                recipe=json.dumps({"epochs": 3, "lr": 0.001}),
                backend_settings=json.dumps({"batch": 1, "threads": 1}),
            )
            s.add(row)
            s.flush()
            written.append({"id": row.id, "study": study, "state": state, "cfg": cfg,
                            "accuracy": row.accuracy, "latency_ms": row.latency_ms,
                            "flops": flops, "params": params})
    return written


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "trials.db"
    url = f"sqlite:///{path}"
    rows = fill_store(url)
    # Optuna's own record of the study's objectives, as the search command leaves it
    study = optuna.create_study(storage=url, study_name="alpha",
                                directions=["maximize", "minimize"])
    other = optuna.create_study(storage=url, study_name="beta",
                                directions=["maximize", "minimize"])
    optuna.create_study(storage=url, study_name="delta")  # created, nothing stored yet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "latency_ms"])
        other.set_metric_names(["accuracy", "params"])
    return SimpleNamespace(url=url, path=path, rows=rows)


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def complete(rows, study=None):
    return [r for r in rows if r["state"] == store.COMPLETE and (study is None
                                                                 or r["study"] == study)]


def test_studies_lists_counts_objectives_and_best(filled):
    res = run("studies", "--storage", filled.url, "--format", "json")
    assert res.exit_code == 0, res.output
    data = {s["name"]: s for s in json.loads(res.output)}
    assert set(data) == {"alpha", "beta", "delta"}
    assert data["delta"]["trials"] == 0 and data["delta"]["states"] == {}
    alpha = [r for r in filled.rows if r["study"] == "alpha"]
    assert data["alpha"]["trials"] == len(alpha)
    assert data["alpha"]["states"] == {
        st: sum(r["state"] == st for r in alpha) for st in {r["state"] for r in alpha}}
    assert data["alpha"]["objectives"] == ["accuracy:max", "latency_ms:min"]
    assert data["beta"]["objectives"] == ["accuracy:max", "params:min"]  # from Optuna's record
    assert data["beta"]["best"]["params"] == min(r["params"] for r in complete(filled.rows,
                                                                               "beta"))
    best_acc = max(r["accuracy"] for r in complete(filled.rows, "alpha"))
    assert data["alpha"]["best"]["accuracy"] == pytest.approx(best_acc)
    table = run("studies", "--storage", filled.url)
    assert "alpha" in table.output and "accuracy:max" in table.output


def test_list_filter_sort_limit(filled):
    where = 'latency_ms < 3 and accuracy > 0.5 and stage3.block == "lgl"'
    res = run("trials", "list", "--storage", filled.url, "--where", where, "--sort", "-accuracy",
              "--format", "json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    want = [r for r in complete(filled.rows) if r["latency_ms"] < 3 and r["accuracy"] > 0.5
            and r["cfg"].stages[2].block == "lgl"]
    assert want, "the synthetic data should match the filter"
    assert [g["id"] for g in got] == [r["id"] for r in
                                      sorted(want, key=lambda r: -r["accuracy"])]
    res = run("trials", "list", "--storage", filled.url, "--study", "beta", "--sort", "flops",
              "--limit", "5", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(res.output)))
    beta = sorted((r for r in filled.rows if r["study"] == "beta"),
                  key=lambda r: (r["flops"], r["id"]))
    assert [int(r["id"]) for r in rows] == [r["id"] for r in beta[:5]]
    assert {r["study"] for r in rows} == {"beta"}
    table = run("trials", "list", "--storage", filled.url, "--where", "state == 'infeasible'")
    n_inf = sum(r["state"] == store.INFEASIBLE for r in filled.rows)
    assert f"{n_inf} trials" in table.output


def test_options_and_in_lists(filled):
    got = query.list_trials(where='stage1.options.local_agg == "lsa" and stage1.block in '
                                  '["lgl"] and not state in ["infeasible"]', storage=filled.url)
    want = [r["id"] for r in filled.rows if r["cfg"].stages[0].opts.get("local_agg") == "lsa"
            and r["state"] != store.INFEASIBLE]
    assert sorted(t.id for t in got) == sorted(want)


def test_bad_filter_and_unknown_field_are_one_line_errors(filled):
    res = CliRunner().invoke(cli, ["trials", "list", "--storage", filled.url, "--where",
                                   "latncy_ms < 3"])
    assert res.exit_code != 0
    assert "unknown field 'latncy_ms'" in str(res.exception)
    assert "latency_ms" in str(res.exception) and "stageN.block" in str(res.exception)


def test_show(filled):
    r = complete(filled.rows, "alpha")[0]
    res = run("trials", "show", str(r["id"]), "--storage", filled.url)
    assert res.exit_code == 0, res.output
    out = res.output
    assert f"Trial {r['id']}" in out and "alpha" in out
    assert r["cfg"].stages[2].block in out
    assert f"{r['accuracy'] * 100:.2f} %" in out
    assert "Training curve" in out and "val_acc" in out
    assert "environment:" in out and "python=" in out
    detail = json.loads(run("trials", "show", str(r["id"]), "--storage", filled.url,
                            "--format", "json").output)
    assert detail["config"] == r["cfg"].to_dict()
    assert len(detail["curve"]) == 3
    assert [s["width"] for s in detail["stages"]] == list(r["cfg"].widths)


def test_show_saves_the_architecture_for_reuse(filled, tmp_path):
    r = complete(filled.rows, "alpha")[0]
    path = tmp_path / "best.json"
    res = run("trials", "show", str(r["id"]), "--storage", filled.url, "--save-config", str(path))
    assert res.exit_code == 0, res.output
    saved = ArchConfig.load(path)
    assert saved == r["cfg"] and saved.hash == r["cfg"].hash  # the very network the trial trained
    res = run("measure", str(path), "--no-latency", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["hash"] == r["cfg"].hash
    res = CliRunner().invoke(cli, ["trials", "show", str(r["id"]), "--storage", filled.url,
                                   "--save-config", str(tmp_path / "no" / "such" / "dir.json")])
    assert res.exit_code != 0 and "cannot write" in str(res.exception)


def test_show_missing_trial(filled):
    res = CliRunner().invoke(cli, ["trials", "show", "99999", "--storage", filled.url])
    assert res.exit_code != 0 and "no trial with id 99999" in str(res.exception)


def test_export_csv_and_json(filled, tmp_path):
    out = tmp_path / "all.csv"
    res = run("trials", "export", "--format", "csv", "--output", str(out), "--storage",
              filled.url)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(filled.rows)
    first = filled.rows[0]
    assert ArchConfig.from_json(rows[0]["config"]) == first["cfg"]
    assert int(rows[0]["flops"]) == first["flops"]
    res = run("trials", "export", "--format", "json", "--study", "beta", "--storage", filled.url)
    data = json.loads(res.output)
    assert len(data) == sum(r["study"] == "beta" for r in filled.rows)
    assert isinstance(data[0]["curve"], list) and data[0]["config"]["num_classes"] == 10


def test_pareto_table_json_and_png(filled, tmp_path):
    png = tmp_path / "front.png"
    res = run("pareto", "--study", "alpha", "--storage", filled.url, "--no-presets",
              "--plot", str(png), "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    rows = complete(filled.rows, "alpha")
    # Optuna's own answer on the same trials
    study = optuna.create_study(directions=["maximize", "minimize"])
    for r in rows:
        study.add_trial(optuna.trial.create_trial(values=[r["accuracy"], r["latency_ms"]],
                                                  user_attrs={"id": r["id"]}))
    best = {t.user_attrs["id"] for t in study.best_trials}
    assert {p["id"] for p in data["front"]} == best
    assert data["objectives"] == ["accuracy:max", "latency_ms:min"]
    assert data["knee"]["id"] in best
    assert 0 < data["hypervolume_normalised"] <= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    table = run("pareto", "--study", "alpha", "--storage", filled.url, "--no-presets")
    assert "Hypervolume" in table.output and "knee" in table.output
    short = run("pareto", "--study", "alpha", "--storage", filled.url, "--no-presets",
                "--limit", "2")
    assert f"{len(best)} of {len(rows)} complete trials" in short.output
    assert "shown (--limit 0 for all)" in short.output
    # without --objectives a study is analysed on its own objectives
    beta = json.loads(run("pareto", "--study", "beta", "--storage", filled.url, "--no-presets",
                          "--format", "json").stdout)
    assert beta["objectives"] == ["accuracy:max", "params:min"]


def test_pareto_noise_marks_front_members(filled):
    from edgeexplore.analysis.pareto import within_noise

    args = ("pareto", "--study", "alpha", "--storage", filled.url, "--no-presets", "--format",
            "json")
    plain = json.loads(run(*args).stdout)
    assert all("within_noise" not in p for p in plain["front"])
    data = json.loads(run(*args, "--noise", "accuracy=0.05").stdout)
    result = query.pareto_front("alpha", storage=filled.url)
    marked = within_noise(result.values, result.objectives, result.on_front, {"accuracy": 0.05})
    want = {result.ids[i] for i in np.flatnonzero(marked)}
    assert {p["id"] for p in data["front"] if p["within_noise"]} == want
    # a spread wider than every accuracy gap: each front member but the fastest is matched by a
    # faster one, so all of them but that one are marked
    wide = json.loads(run(*args, "--noise", "1.0").stdout)["front"]
    fastest = min(wide, key=lambda p: p["latency_ms"])
    assert len(wide) > 1
    assert {p["id"] for p in wide if p["within_noise"]} == {p["id"] for p in wide} - {fastest["id"]}
    bad = run("pareto", "--study", "alpha", "--storage", filled.url, "--noise", "accuracy=x")
    assert bad.exit_code != 0 and "NAME=NUMBER" in bad.output


def test_pareto_three_objectives_two_studies_html(filled, tmp_path):
    html = tmp_path / "front.html"
    res = run("pareto", "--study", "alpha", "--study", "beta", "--objectives",
              "accuracy:max,latency_ms:min,params:min", "--storage", filled.url,
              "--no-presets", "--plot", str(html))
    assert res.exit_code == 0, res.output
    text = html.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "</html>" in text
    assert "trials on its own front" in res.output and "study beta" in res.output
    result = query.pareto_front(["alpha", "beta"], "accuracy:max,latency_ms:min,params:min",
                                storage=filled.url)
    vals = np.array([[r["accuracy"], r["latency_ms"], r["params"]] for r in
                     complete(filled.rows)])
    assert len(result.values) == len(vals)


def test_missing_database_is_not_created(tmp_path):
    path = tmp_path / "nope.db"
    for args in (["studies"], ["trials", "list"], ["pareto"], ["trials", "show", "1"]):
        res = CliRunner().invoke(cli, [*args, "--storage", str(path)])
        assert res.exit_code != 0
        assert "no database at" in str(res.exception)
    assert not path.exists()


def test_unknown_study(filled):
    res = CliRunner().invoke(cli, ["pareto", "--study", "gamma", "--storage", filled.url])
    assert "no study named 'gamma'" in str(res.exception)
    assert "alpha, beta" in str(res.exception)


def test_python_api_frames(filled):
    pd = pytest.importorskip("pandas")
    df = query.list_trials(study="alpha", storage=filled.url, as_frame=True)
    assert isinstance(df, pd.DataFrame)
    assert len(df) == sum(r["study"] == "alpha" for r in filled.rows)
    assert {"accuracy", "latency_ms", "blocks"} <= set(df.columns)


def test_cli_main_prints_one_line(filled, capsys):
    from edgeexplore.cli import main

    code = main(["trials", "list", "--storage", filled.url, "--where",
                 "accuracy > 0; DROP TABLE trial_results"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("Error: unexpected ';'") and err.count("\n") == 1
    assert Path(filled.path).exists()


def test_presets_from_the_store(tmp_path):
    """Presets take stored values: a trial of the same architecture, else its stored cost."""
    from edgeexplore.config import PRESETS
    from edgeexplore.evaluation import place_presets

    url = f"sqlite:///{tmp_path / 'p.db'}"
    fill_store(url, n=30)
    xxs = PRESETS["edgevit_xxs"].replace(resolution=(64, 64), num_classes=10)
    xs = PRESETS["edgevit_xs"].replace(resolution=(64, 64), num_classes=10)
    small = PRESETS["edgevit_s"].replace(resolution=(64, 64), num_classes=10)
    with db.session_scope(url) as s:
        # stored costs stand in for fvcore counting (tens of seconds on a busy 2-core box)
        store.upsert_architecture(s, small, SimpleNamespace(params=13_000_000, flops=1.5e8,
                                                            activations=1, per_stage={}))
        store.upsert_architecture(s, xs, SimpleNamespace(params=6_700_000, flops=91_000_000,
                                                         activations=1, per_stage={}))
        store.upsert_architecture(s, xxs, SimpleNamespace(params=4_000_000, flops=44_000_000,
                                                          activations=1, per_stage={}))
        s.add(store.TrialResult(study="alpha", number=99, arch_hash=xxs.hash,
                                state=store.COMPLETE, accuracy=0.66, latency_ms=3.0,
                                flops=44_000_000, params=4_000_000, backend="torch-cpu",
                                resolution="64x64"))
    result = query.pareto_front("alpha", "accuracy:max,flops:min", storage=url,
                                presets=["edgevit_xxs", "edgevit_xs"])
    assert result.references[1].note == "not measured"  # the query itself measures nothing
    place_presets(result.preset_requests, storage=url)
    by_name = {p.name: p for p in result.references}
    assert by_name["edgevit_xxs"].values == {"accuracy": 0.66, "flops": 44_000_000.0}
    assert by_name["edgevit_xxs"].note.startswith("stored trial")
    assert by_name["edgevit_xs"].values == {"accuracy": None, "flops": 91_000_000.0}
    assert "--train-presets" in by_name["edgevit_xs"].note
    png = tmp_path / "presets.png"
    res = run("pareto", "--study", "alpha", "--objectives", "accuracy:max,flops:min",
              "--storage", url, "--plot", str(png))
    assert res.exit_code == 0, res.output
    assert "Preset edgevit_xxs: accuracy 66.00 %" in res.output
    # one unit rule for counts: K, M or G by size
    assert "Preset edgevit_s: accuracy -, flops 150 M" in res.output
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("where", ["précision > 0.5", "é < 3", "accuracy > 0 and größe == 2"])
def test_an_unknown_non_ascii_field_is_named_with_the_valid_ones(filled, capsys, where):
    from edgeexplore.cli import main

    assert main(["trials", "list", "--storage", filled.url, "--where", where]) == 1
    err = capsys.readouterr().err
    name = where.split()[-3] if "and" in where else where.split()[0]
    assert err.startswith(f"Error: unknown field {name!r}; valid fields: accuracy")
    assert err.count("\n") == 1


@pytest.mark.parametrize("objectives", ["latency_ms:min;DROP TABLE trials", "accuracy:max--"])
def test_an_objective_with_junk_after_the_colon_is_not_a_valid_objective(filled, capsys,
                                                                           objectives):
    from edgeexplore.cli import main

    before = Path(filled.path).read_bytes()
    assert main(["pareto", "--storage", filled.url, "--objectives", objectives]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: {objectives!r} is not a valid objective: give NAME:max or "
                          "NAME:min (names: accuracy, ")
    assert "latency_ms" in err and err.count("\n") == 1
    assert Path(filled.path).read_bytes() == before


def test_trials_curves_table_json_and_plots(filled, tmp_path, capsys):
    from edgeexplore.cli import main

    a, b = complete(filled.rows)[:2]
    res = run("trials", "curves", str(a["id"]), str(b["id"]), "--storage", filled.url,
              "--format", "json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [(r["id"], r["epoch"]) for r in rows] == [(t["id"], e) for t in (a, b)
                                                     for e in range(3)]
    assert rows[2]["val_acc"] == pytest.approx(a["accuracy"])
    assert rows[0]["train_loss"] == pytest.approx(2.0)
    for name in ("c.png", "c.svg", "c.html"):
        res = run("trials", "curves", str(a["id"]), str(b["id"]), "--storage", filled.url,
                  "--plot", str(tmp_path / name))
        assert res.exit_code == 0, res.output
        assert "Learning curves" in res.stdout
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "c.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page
    assert f"trial {a['id']} (" in (tmp_path / "c.svg").read_text()
    capsys.readouterr()
    assert main(["trials", "curves", str(a["id"]), "--storage", filled.url, "--plot",
                 str(tmp_path / "c.txt")]) == 1
    assert "use a .png" in capsys.readouterr().err


def test_studies_rename_and_delete_change_both_stores(tmp_path, capsys):
    from edgeexplore.cli import main

    url = f"sqlite:///{tmp_path / 's.db'}"
    rows = fill_store(url, n=12)
    for name in ("alpha", "beta"):
        study = optuna.create_study(storage=url, study_name=name,
                                    directions=["maximize", "minimize"])
        study.add_trial(optuna.trial.create_trial(values=[0.5, 1.0]))
    trial_id = optuna.load_study(study_name="alpha", storage=url).trials[0]._trial_id
    n_alpha = sum(r["study"] == "alpha" for r in rows)

    res = CliRunner().invoke(cli, ["studies", "rename", "alpha", "gamma", "--storage", url],
                             input="n\n")
    assert "nothing was renamed" in str(res.exception)
    res = run("studies", "rename", "alpha", "gamma", "--yes", "--storage", url)
    assert res.exit_code == 0 and f"({n_alpha} trials)" in res.output
    listed = {s["name"]: s for s in json.loads(run("studies", "--storage", url, "--format",
                                                   "json").stdout)}
    assert set(listed) == {"gamma", "beta"} and listed["gamma"]["trials"] == n_alpha
    renamed = optuna.load_study(study_name="gamma", storage=url)
    assert renamed.trials[0]._trial_id == trial_id  # the same trials, not copies
    assert main(["studies", "rename", "gamma", "beta", "-y", "--storage", url]) == 1
    assert "a study named 'beta' already exists" in capsys.readouterr().err
    assert main(["studies", "delete", "ablation:x", "-y", "--storage", url]) == 1
    assert "ablation" in capsys.readouterr().err

    res = CliRunner().invoke(cli, ["studies", "delete", "beta", "--storage", url], input="y\n")
    assert res.exit_code == 0 and "Deleted study 'beta'" in res.output
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["gamma"]
    assert {t.study for t in query.list_trials(storage=url)} == {"gamma"}
    assert main(["studies", "delete", "beta", "-y", "--storage", url]) == 1
    assert "no study named 'beta' in the store (studies: gamma)" in capsys.readouterr().err


def test_pareto_compares_studies_one_front_each(filled):
    from edgeexplore.analysis.pareto import hypervolume
    from edgeexplore.objectives import Objective

    res = run("pareto", "--study", "alpha", "--study", "beta", "--objectives",
              "accuracy:max,latency_ms:min", "--storage", filled.url, "--no-presets",
              "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    ref = np.array([-data["reference_point"]["accuracy"], data["reference_point"]["latency_ms"]])
    objs = [Objective("accuracy", "max"), Objective("latency_ms", "min")]
    for name in ("alpha", "beta"):
        rows = complete(filled.rows, name)
        study = optuna.create_study(directions=["maximize", "minimize"])
        for r in rows:
            study.add_trial(optuna.trial.create_trial(values=[r["accuracy"], r["latency_ms"]],
                                                      user_attrs={"id": r["id"]}))
        # each study's own front, as Optuna reports it for that study alone
        assert set(data["group_fronts"][name]) == {t.user_attrs["id"] for t in study.best_trials}
        vals = np.array([[r["accuracy"], r["latency_ms"]] for r in rows])
        assert data["group_hypervolumes"][name] == pytest.approx(hypervolume(vals, objs, ref))
    table = run("pareto", "--study", "alpha", "--study", "beta", "--objectives",
                "accuracy:max,latency_ms:min", "--storage", filled.url, "--no-presets")
    n_beta = len([r for r in filled.rows if r["study"] == "beta" and r["state"] == "complete"])
    assert (f"study beta: {len(data['group_fronts']['beta'])} of {n_beta} trials on its own "
            "front") in table.output


def test_pareto_plot_tells_studies_apart_and_keeps_presets_off_the_axes(filled, tmp_path):
    from edgeexplore.analysis.pareto import ReferencePoint, plot

    svg = tmp_path / "two.svg"
    res = run("pareto", "--study", "alpha", "--study", "beta", "--objectives",
              "accuracy:max,latency_ms:min,params:min", "--storage", filled.url,
              "--no-presets", "--plot", str(svg))
    assert res.exit_code == 0, res.output
    text = svg.read_text()
    result = query.pareto_front(["alpha", "beta"], "accuracy:max,latency_ms:min,params:min",
                                storage=filled.url)
    for name in ("alpha", "beta"):  # a legend entry per study, with its own front's size
        assert f"study {name}: its own front ({len(result.group_front(name))})" in text
    assert "marker size: params:min" in text and "on the joint front" in text

    # a preset 50x slower than every trial: named in a note, the axes stay on the trials
    slow = max(r["latency_ms"] for r in complete(filled.rows, "alpha")) * 50
    alpha = query.pareto_front("alpha", "accuracy:max,latency_ms:min", storage=filled.url)
    alpha.references = [ReferencePoint("edgevit_s", {"accuracy": None, "latency_ms": slow}),
                        ReferencePoint("edgevit_xxs", {"accuracy": None,
                                                       "latency_ms": alpha.values[0, 1]})]
    plot(alpha, tmp_path / "p.svg")
    text = (tmp_path / "p.svg").read_text()
    assert "beyond the trials' range: edgevit_s" in text
    assert "edgevit_xxs (" in text and "edgevit_xxs" not in text.split("beyond")[1]



def test_pareto_where_on_architecture_fields_sees_only_the_filtered_trials_backends(tmp_path):
    """Every query of a filtered front joins what the filter names: the backends checked are
    those of the filtered trials (no cartesian product with the architectures)."""
    from sqlalchemy import select, update

    from edgeexplore.errors import EdgeExploreError

    url = f"sqlite:///{tmp_path / 'two-backends.db'}"
    fill_store(url, n=40)
    T, A = store.TrialResult, store.Architecture
    with db.session_scope(url) as s:  # trials without an lgl third stage timed elsewhere
        s.execute(update(T).where(T.arch_hash.in_(select(A.hash).where(A.stage3_block != "lgl")))
                  .values(backend="onnxruntime"))
    with pytest.raises(EdgeExploreError, match="several backends"):
        query.pareto_front(storage=url)
    result = query.pareto_front(where='stage3.block == "lgl"', storage=url)
    assert len(result.values) == len(query.list_trials(
        where='stage3.block == "lgl" and state == "complete"', storage=url))


# -- outputs never replace the store, and --noise is checked ----------------------------------


@pytest.mark.parametrize("args", [["trials", "export", "-o"], ["trials", "show", "1",
                                                               "--save-config"]])
def test_an_output_over_the_store_is_refused(filled, tmp_path, capsys, args):
    import sqlite3

    from edgeexplore.cli import main

    copy = tmp_path / "copy.db"
    with sqlite3.connect(filled.path) as source, sqlite3.connect(copy) as target:
        source.backup(target)  # the fixture's store is in WAL mode: a file copy misses rows
    before = copy.read_bytes()
    assert main([*args, str(copy), "--storage", str(copy)]) == 1
    err = capsys.readouterr().err
    assert f"{copy} is the database the trials are read from" in err and err.count("\n") == 1
    assert copy.read_bytes() == before


@pytest.mark.parametrize(("noise", "needle"), [
    ("accuracy=-1", "a spread is a finite number, 0 or more"),
    ("accuracy=nan", "a spread is a finite number, 0 or more"),
    ("inf", "a spread is a finite number, 0 or more"),
    ("colour=1", "'colour' is not an objective here (objectives: accuracy, latency_ms)"),
])
def test_pareto_refuses_a_spread_that_means_nothing(filled, capsys, noise, needle):
    from edgeexplore.cli import main

    assert main(["pareto", "--study", "alpha", "--no-presets", "--storage", filled.url,
                 "--noise", noise]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
