"""Bad input is refused in one sentence with a non-zero exit, before anything is trained."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import torch
from tiny import TINY

from edgeexplore.ablation.variants import load_component
from edgeexplore.cli import main
from edgeexplore.errors import EdgeExploreError
from edgeexplore.search.recipe import StudyRecipe

ROOT = Path(__file__).resolve().parents[1]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- YAML: a repeated key is an editing slip, never "the last one wins" -----------------------------


def test_duplicate_key_in_a_search_space(tmp_path, capsys):
    text = (ROOT / "search_spaces" / "edgevit-tiny.yaml").read_text()
    space = tmp_path / "dup.yaml"
    space.write_text(text.replace("resolution: 64\n", "resolution: 32\nresolution: 64\n"))
    line = text.splitlines().index("resolution: 64") + 1
    assert main(["spaces", str(space)]) == 1
    err = _one_line_error(capsys)
    assert f"key 'resolution' is given twice (lines {line} and {line + 1})" in err
    assert "dup.yaml" in err


def test_duplicate_key_in_a_flow_mapping_of_a_recipe(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nspace: edgevit-tiny\nproxy: {epochs: 1, epochs: 2}\n")
    assert main(["search", str(recipe), "--budget", "1", "--storage", str(tmp_path / "r.db")]) == 1
    assert "key 'epochs' is given twice (line 3)" in _one_line_error(capsys)
    assert not (tmp_path / "r.db").exists()


def test_duplicate_key_in_a_variant_file(tmp_path, capsys):
    variants = tmp_path / "v.yaml"
    variants.write_text("variants:\n  - name: a\n    name: b\n    changes: {mlp_ratio: 3}\n")
    assert main(["ablate", str(variants), "--quick", "--storage", str(tmp_path / "v.db")]) == 1
    assert "key 'name' is given twice (lines 2 and 3)" in _one_line_error(capsys)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path, capsys):
    variants = tmp_path / "v.yaml"
    variants.write_text("variants:\n  - &a {name: a, changes: {mlp_ratio: 3}}\n"
                        "  - <<: *a\n    name: b\n")
    assert [v.name for v in load_component(variants).variants] == ["a", "b"]


# -- convert ------------------------------------------------------------------------------------


class _NotWeights:
    """A pickled object that torch.load(weights_only=True) refuses."""


def test_convert_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    text = tmp_path / "notes.pth"
    text.write_text("hello, not a checkpoint\n")
    assert main(["convert", str(text), "--head-dim", "16"]) == 1
    assert f"{text} is not a PyTorch checkpoint" in _one_line_error(capsys)
    pickled = tmp_path / "objects.pth"
    torch.save({"model": _NotWeights()}, pickled)
    assert main(["convert", str(pickled), "--head-dim", "16"]) == 1
    err = _one_line_error(capsys)
    assert re.search(r"holds a Python object \(\S*_NotWeights\), not only weights", err)
    assert "weights_only" not in err


def test_convert_refuses_a_missing_output_folder(tmp_path, capsys):
    ckpt = tmp_path / "official.pth"
    torch.save({"w": torch.zeros(1)}, ckpt)
    out = tmp_path / "nosuch" / "ours.pt"
    assert main(["convert", str(ckpt), "--head-dim", "16", "-o", str(out)]) == 1
    assert f"folder {out.parent} does not exist" in _one_line_error(capsys)
    assert not out.parent.exists()


# -- measure / backends ---------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "needle"), [
    (["--batch", "100000000"], "batch must be at most 4096, not 100000000"),
    (["--threads", "99999"], "threads must be at most"),
    (["--backend", "command", "--set", "command=echo", "--threads", "2000"],
     "threads must be at most 1024 (the cap for a command backend), not 2000"),
])
def test_measure_caps_batch_and_threads(tmp_path, capsys, args, needle):
    assert main(["measure", "edgevit_xxs", "--storage", str(tmp_path / "m.db"), *args]) == 1
    assert needle in _one_line_error(capsys)
    assert not (tmp_path / "m.db").exists()  # refused before the cache is created


def test_thread_cap_scales_with_usable_cores(monkeypatch):
    from edgeexplore.latency import base

    monkeypatch.setattr(base, "usable_cores", lambda: 3)
    assert base.check_threads(12) == 12
    with pytest.raises(EdgeExploreError, match=r"at most 12 \(4 per usable core"):
        base.check_threads(13)


def test_set_keeps_text_settings_as_typed(capsys):
    """`--set command=false` is the program `false`, not the boolean False (no command at all)."""
    assert main(["backends", "--backend", "command", "--set", "command=false", "--json"]) == 0
    info = next(i for i in json.loads(capsys.readouterr().out) if i["name"] == "command")
    assert info["available"] is True and info["reason"] == "external device via false"
    # numbers still are numbers, and a JSON list is still a list of arguments
    assert main(["backends", "--backend", "command", "--set", 'command=["true", "x"]',
                 "--set", "timeout_s=5", "--json"]) == 0
    info = next(i for i in json.loads(capsys.readouterr().out) if i["name"] == "command")
    assert info["available"] is True and info["reason"] == "external device via true"


# -- backends are checked before anything is trained -----------------------------------------------

NO_CUDA = "backend 'cuda' is not available here"


def _tiny(tmp_path: Path, text: str = TINY) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("args", "text", "needle"), [
    (["--backend", "nosuch"], TINY, "unknown latency backend 'nosuch' (known: torch-cpu"),
    (["--backend", "cuda"], TINY, NO_CUDA),
    ([], TINY.replace("max_samples: 5}", "max_samples: 5, colour: red}"),
     "backend 'torch-cpu' has no setting 'colour'"),
    ([], TINY.replace("threads: 1,", "threads: 100000,"), "threads must be at most"),
])
def test_search_checks_the_backend_before_the_first_trial(tmp_path, capsys, args, text, needle):
    if needle == NO_CUDA and torch.cuda.is_available():
        pytest.skip("a GPU is visible here, so cuda is available")
    db = tmp_path / "s.db"
    assert main(["search", str(_tiny(tmp_path, text)), "--budget", "1", "--storage", str(db),
                 "--quiet", *args]) == 1
    assert needle in _one_line_error(capsys)
    assert not db.exists()  # no store created, no failed trial stored


@pytest.mark.parametrize("backend", ["nosuch", "cuda"])
def test_ablate_checks_the_backend_before_training(tmp_path, capsys, backend):
    if backend == "cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is visible here, so cuda is available")
    db = tmp_path / "a.db"
    assert main(["ablate", "local-agg", "--quick", "--storage", str(db), "--backend", backend]) == 1
    err = _one_line_error(capsys)
    assert (NO_CUDA if backend == "cuda" else "unknown latency backend 'nosuch'") in err
    assert not db.exists()


def test_search_refuses_to_resume_a_study_with_another_space(tmp_path, capsys):
    db = tmp_path / "s.db"
    first = _tiny(tmp_path)
    assert main(["search", str(first), "--budget", "1", "--storage", str(db), "--quiet"]) == 0
    capsys.readouterr()
    other = tmp_path / "other.yaml"
    other.write_text(TINY.replace("space: edgevit-tiny", "space: hybrid-tiny"))
    assert main(["search", str(other), "--name", "tiny", "--budget", "1", "--storage", str(db),
                 "--quiet"]) == 1
    err = _one_line_error(capsys)
    assert "study 'tiny' already exists with other search-space parameters" in err
    assert "edgevit-tiny" in err and "hybrid-tiny" in err
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM trial_results").fetchone() == (1,)  # none failed
    con.close()


def test_a_changed_constraint_is_the_same_space(tmp_path):
    text = (ROOT / "search_spaces" / "edgevit-tiny.yaml").read_text()
    assert "max_params: 2M" in text
    tighter = tmp_path / "tighter.yaml"
    tighter.write_text(text.replace("max_params: 2M", "max_params: 1M"))
    wider = tmp_path / "wider.yaml"
    wider.write_text(text.replace("head_dim: [16, 24]", "head_dim: [16, 24, 32]"))
    keys = [StudyRecipe.from_dict({"name": "r", "space": str(p)}).space_key()
            for p in (ROOT / "search_spaces" / "edgevit-tiny.yaml", tighter, wider)]
    assert keys[0] == keys[1] != keys[2]


# -- the store ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["trials", "list"], ["studies"], ["pareto"], ["measure", "edgevit_xxs"],
    ["search", "--budget", "1"], ["ablate", "local-agg", "--quick"],
])
def test_a_folder_as_storage_is_named_as_a_folder(tmp_path, capsys, command):
    assert main([*command, "--storage", str(tmp_path)]) == 1
    err = _one_line_error(capsys)
    assert f"{tmp_path} is a folder, not a database file" in err and "pass --storage" not in err
    assert list(tmp_path.iterdir()) == []


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` unwritable for this process: chmod, or as root (which chmod does not stop) the
    immutable flag; skipped where neither can be done."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    try:
        chattr = subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True)
        made = chattr.returncode == 0
    except FileNotFoundError:
        made = False
    if not made:
        pytest.skip("running as root without chattr +i: cannot make a file unwritable")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _store_without_the_study(path: Path) -> None:
    from edgeexplore.store import db

    db.get_engine(str(path))  # our tables
    optuna.create_study(study_name="someone-else", storage=f"sqlite:///{path}")  # Optuna's


def test_search_on_a_read_only_store_is_one_sentence(tmp_path, capsys, monkeypatch):
    store = tmp_path / "ro.db"
    _store_without_the_study(store)
    before = store.read_bytes()
    args = ["search", str(_tiny(tmp_path)), "--budget", "1", "--storage", str(store), "--quiet"]
    with _read_only(store):
        assert main(args) == 1
        assert f"cannot write the database {store}: the file is read-only" in _one_line_error(
            capsys)
        # where the file check cannot see it (another database), Optuna's failure is one line too
        from edgeexplore.store import db

        monkeypatch.setattr(db, "check_writable", lambda url: None)
        assert main(args) == 1
        assert "the database refused an operation: attempt to write a readonly database" in (
            _one_line_error(capsys))
    assert store.read_bytes() == before


def test_ablate_on_a_read_only_store_is_refused_before_matching(tmp_path, capsys):
    store = tmp_path / "ro.db"
    _store_without_the_study(store)
    with _read_only(store):
        assert main(["ablate", "local-agg", "--quick", "--storage", str(store)]) == 1
    out, err = capsys.readouterr()
    assert f"cannot write the database {store}: the file is read-only" in err
    assert err.count("\n") == 1 and "depths" not in out + err  # nothing matched or trained


def test_search_in_a_read_only_folder_is_one_sentence(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    args = ["search", str(_tiny(tmp_path)), "--budget", "1", "--storage", str(folder / "s.db"),
            "--quiet"]
    with _read_only(folder):
        assert main(args) == 1
        assert f"folder {folder} is not writable" in _one_line_error(capsys)
    assert list(folder.iterdir()) == []


# -- the whole-sweep findings (benchmarks/bad_input_sweep.py) ------------------------------------


def _one_short_line(capsys, limit: int = 1000) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("Usage:", "Try '"))]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and len(lines[0]) <= limit, err[:2000]
    return lines[0]


@pytest.mark.parametrize("command", [
    ["trials", "list", "--storage"], ["spaces"], ["measure"], ["search"],
])
def test_a_file_name_too_long_is_one_short_sentence(capsys, command):
    """The system's ENAMETOOLONG was a traceback; the 100k-character name is shortened."""
    assert main([*command, "x" * 100_000]) == 1
    assert "(100000 characters)" in _one_short_line(capsys)


def test_a_huge_argument_is_echoed_shortened(tmp_path, capsys):
    _store_without_the_study(tmp_path / "s.db")
    for args in (["trials", "list", "--study", "y" * 100_000],
                 ["trials", "show", "9" * 100_000]):
        assert main([*args, "--storage", str(tmp_path / "s.db")]) in (1, 2)
        assert "characters)" in _one_short_line(capsys)


def test_control_characters_in_an_error_are_escaped(tmp_path, capsys):
    name = "a\x1b[31mred\rb"
    assert main(["trials", "list", "--storage", str(tmp_path / name)]) == 1
    line = _one_short_line(capsys)
    assert "\x1b" not in line and "\r" not in line and "a\\x1b[31mred\\rb" in line


def test_an_unwritable_output_file_is_one_sentence(tmp_path, capsys):
    out = tmp_path / "out.onnx"
    out.write_text("keep me\n")
    with _read_only(out):
        assert main(["export", "edgevit_xxs", "--resolution", "32", "-o", str(out),
                     "--no-time"]) == 1
        assert f"cannot use {out}" in _one_short_line(capsys)
    assert out.read_text() == "keep me\n"


@pytest.mark.parametrize("command", [["predictor", "show"], ["predictor", "check", "edgevit_xxs"]])
def test_predictor_reads_never_create_a_store(tmp_path, capsys, command):
    db = tmp_path / "nosuch.db"
    assert main([*command, "--storage", str(db)]) == 1
    assert f"no database at {db}" in _one_short_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "needle"), [
    (["trials", "list", "--limit", "9" * 30], "--limit"),
    (["trials", "rerun", str(2**70)], f"no trial with id {2**70}"),
    (["trials", "rerun", "1", "--seed", "9" * 30], "--seed"),
])
def test_integers_past_what_sqlite_and_seeds_take(tmp_path, capsys, args, needle):
    store = tmp_path / "s.db"
    _store_without_the_study(store)
    before = store.read_bytes()
    assert main([*args, "--storage", str(store)]) in (1, 2)
    assert needle in _one_short_line(capsys)
    assert store.read_bytes() == before


@pytest.mark.parametrize("command", [["delete", "someone-else"],
                                     ["rename", "someone-else", "new"]])
def test_studies_question_with_no_answer_is_a_sentence(tmp_path, capsys, monkeypatch, command):
    """stdin closed (a script without --yes): click's Abort printed "Interrupted." (exit 130)."""
    store = tmp_path / "s.db"
    _store_without_the_study(store)
    before = store.read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["studies", *command, "--storage", str(store)]) == 1
    assert "pass --yes" in _one_short_line(capsys)
    assert store.read_bytes() == before


@pytest.mark.parametrize("new", ["a\x1b[31mb", "n" * 201])
def test_studies_rename_keeps_the_study_name_rule(tmp_path, capsys, new):
    store = tmp_path / "s.db"
    _store_without_the_study(store)
    before = store.read_bytes()
    assert main(["studies", "rename", "someone-else", new, "--yes", "--storage", str(store)]) == 1
    assert "a study name must be 1 to 200 printable characters" in _one_short_line(capsys)
    assert store.read_bytes() == before


def test_deeply_nested_yaml_and_json_are_one_sentence(tmp_path, capsys):
    space = tmp_path / "deep.yaml"
    space.write_text("a: " + "[" * 20_000 + "]" * 20_000 + "\n")
    assert main(["spaces", str(space)]) == 1
    assert "nested too deeply" in _one_short_line(capsys)
    arch = tmp_path / "deep.json"
    arch.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["measure", str(arch), "--no-latency"]) == 1
    assert "nested too deeply" in _one_short_line(capsys)


def test_measure_caps_the_class_count(capsys):
    assert main(["measure", "edgevit_xxs", "--no-latency", "--classes", "1000000000"]) == 1
    assert "num_classes 1000000000 is more than an architecture may have" in (
        _one_short_line(capsys))


def test_a_space_past_the_stage_bounds_is_refused_when_read(tmp_path, capsys):
    space = tmp_path / "deep.yaml"
    space.write_text("resolution: 32\nhead_dim: 8\nstages:\n" + "  - {depth: 100000, heads: 1}\n"
                     + "  - {depth: 1, heads: 1}\n" * 3)
    assert main(["spaces", str(space)]) == 1
    assert "depth: 100000 is more than a stage may have (64)" in _one_short_line(capsys)


@pytest.mark.parametrize(("args", "needle"), [
    (["--budget", "9" * 100_000], "is neither a trial count"),
    (["--budget", "1", "--workers", "100000"], "--workers must be at most"),
])
def test_search_refuses_huge_budgets_and_worker_counts(tmp_path, capsys, args, needle):
    db = tmp_path / "s.db"
    assert main(["search", str(_tiny(tmp_path)), "--storage", str(db), "--quiet", *args]) == 1
    assert needle in _one_short_line(capsys)
    assert not db.exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--flops-target", "abc"], "FLOPs target 'abc' is not a number"),
    (["--flops-target", "1e400"], "FLOPs target '1e400' is not a finite number"),
    (["--name", ""], "a study name must be 1 to 200"),
    (["--name", "a\x1b[31mb"], "a study name must be 1 to 200"),
    (["--base", "nosuch"], "'nosuch' is neither a preset"),
])
def test_ablate_checks_names_and_targets_before_any_work(tmp_path, capsys, args, needle):
    db = tmp_path / "a.db"
    assert main(["ablate", "local-agg", "--quick", "--storage", str(db), *args]) == 1
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err  # no "Data: ..."
    assert not db.exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--data", "folder:/nonexistent"], "data folder /nonexistent does not exist"),
    (["--plot", "nosuch/x.png"], "nosuch does not exist"),
])
def test_fidelity_checks_device_data_and_plot_before_training(tmp_path, capsys, args, needle):
    store = tmp_path / "s.db"
    _store_without_the_study(store)
    before = store.read_bytes()
    assert main(["fidelity", "someone-else", "--storage", str(store), *args]) == 1
    assert needle in _one_short_line(capsys)
    assert store.read_bytes() == before


@pytest.mark.parametrize("factor", [float("nan"), float("inf")])
def test_fidelity_epochs_factor_must_be_finite(factor):
    from edgeexplore.evaluation.fidelity import long_spec

    with pytest.raises(EdgeExploreError, match="--epochs-factor must be above 1"):
        long_spec("any", "longer-proxy", factor, None, None)


def test_train_checks_the_device_before_writing_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "edgevit_xxs", "--data", "synthetic", "-o", str(run),
                 "--device", "tpu"]) == 1
    assert "unknown device 'tpu'" in _one_short_line(capsys)
    assert not run.exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--batch", "100000000"], "--batch must be at most 4096"),
    (["--threads", "99999"], "threads must be at most"),
    (["--threads", "99999", "--no-time"], "threads must be at most"),
    (["--opset", "1000"], "--opset must be at most"),
])
def test_export_caps_batch_threads_and_opset(tmp_path, capsys, args, needle):
    out = tmp_path / "x.onnx"
    assert main(["export", "edgevit_xxs", "-o", str(out), *args]) == 1
    assert needle in _one_short_line(capsys)
    assert not out.exists()


def test_evaluate_a_text_file_is_not_a_checkpoint(tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("hello, not a checkpoint\n")
    assert main(["evaluate", str(text), "--data", "synthetic"]) == 1
    assert f"cannot read {text} as a PyTorch checkpoint: not a checkpoint file" in (
        _one_short_line(capsys))


def test_copy_study_of_a_missing_study_creates_no_store(tmp_path, capsys):
    source = tmp_path / "s.db"
    _store_without_the_study(source)
    assert main(["copy-study", "nosuch", "--from", str(source), "--to",
                 str(tmp_path / "new.db")]) == 1
    assert "holds no study named 'nosuch'" in _one_short_line(capsys)
    assert not (tmp_path / "new.db").exists()
