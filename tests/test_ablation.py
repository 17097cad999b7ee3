"""edgeexplore ablate: variants, FLOPs matching, statistics, tables, store, resume and reuse."""

from __future__ import annotations

import json
import math
import re

import pytest
from click.testing import CliRunner

from edgeexplore.ablation import (
    QUICK_BASE,
    AblationReport,
    AblationSettings,
    CachedCost,
    CostPoint,
    VariantRow,
    get_component,
    load_component,
    load_report,
    match_flops,
    paired_test,
    parse_flops,
    plan_ablation,
    run_ablation,
    sign_test,
    t_sf_two_sided,
)
from edgeexplore.config import BLOCKS, PRESETS
from edgeexplore.errors import ConfigError, EdgeExploreError

QUICK_CLASSES = 10  # the --quick data has 10 classes; the head's FLOPs depend on it


# -- statistics ----------------------------------------------------------------------------------


def test_student_t_matches_closed_forms():
    # df = 1 (Cauchy): p = 1 - 2/pi * atan|t|; df = 2: p = 1 - |t| / sqrt(t^2 + 2)
    for t in (0.3, 1.0, 2.5, 12.0):
        assert t_sf_two_sided(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)
        assert t_sf_two_sided(-t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-12)
    # textbook value: t = 2.0 with 4 degrees of freedom, two-sided
    assert t_sf_two_sided(2.0, 4) == pytest.approx(0.116117, abs=1e-6)
    assert t_sf_two_sided(2.228, 10) == pytest.approx(0.05, abs=1e-4)  # the 97.5% quantile


def test_paired_test_on_known_numbers():
    variant = [0.751, 0.748, 0.755]
    baseline = [0.740, 0.742, 0.749]
    t = paired_test(variant, baseline)
    # differences 0.011, 0.006, 0.006: mean 0.007667, sd 0.0028868, t = 4.6 with 2 df
    assert t.n == 3 and t.wins == 3 and t.losses == 0
    assert t.mean_diff == pytest.approx(0.0076667, abs=1e-6)
    assert t.t == pytest.approx(4.6, abs=1e-6)
    assert t.p == pytest.approx(1 - 4.6 / math.sqrt(4.6**2 + 2), abs=1e-9)  # 0.04416
    assert t.holds(0.05) and not t.holds(0.01)
    assert t.sign_p == pytest.approx(0.25)
    # identical shifts: the t statistic is infinite, so the exact sign test decides
    assert paired_test([2, 3], [1, 2]).p == pytest.approx(0.5)
    assert paired_test([2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6]).p == pytest.approx(2 / 64)
    assert paired_test([1, 2], [1, 2]).p == 1.0
    # one image of 300 lost on both seeds: the same shift up to float rounding, so not p = 0
    rounded = paired_test([30 / 300, 27 / 300], [31 / 300, 28 / 300])
    assert rounded.std_diff < 1e-12 and rounded.p == pytest.approx(0.5)
    assert not rounded.holds(0.05)
    assert math.isnan(paired_test([1.0], [0.5]).p)
    assert sign_test(5, 0) == pytest.approx(2 / 32)


# -- variants ------------------------------------------------------------------------------------


def test_builtin_variants_change_the_sparse_stages_only():
    base = PRESETS["edgevit_xxs"]
    comp = get_component("local-agg")
    assert [v.name for v in comp.variants] == ["LocalAgg", "none (SRA)", "LSA"]
    assert comp.baseline.name == "LocalAgg"
    sra = comp.variants[1].apply(base)
    assert [s.block for s in sra.stages] == ["sra", "sra", "sra", "lgl"]
    lsa = comp.variants[2].apply(base)
    assert [s.opts["local_agg"] for s in lsa.stages[:3]] == ["lsa"] * 3
    assert comp.baseline.apply(base).hash == base.hash  # the baseline is the official block
    sampler = get_component("sampler")
    assert [v.name for v in sampler.variants] == ["pick", "center", "avg", "max"]
    assert sampler.variants[3].apply(base).stages[0].opts["sampler"] == "max"
    prop = get_component("local-prop")
    assert [v.name for v in prop.variants] == ["deconv", "bilinear", "nearest", "none (SRA)"]
    assert [v.name for v in get_component("block").variants] == list(BLOCKS)
    with pytest.raises(ConfigError, match="neither a component"):
        get_component("nonsense")


@pytest.mark.parametrize("component", ["local-agg", "sampler"])
def test_ablated_depths_only_keeps_the_other_stages(component, real_cost):
    """The paper's protocol: only the ablated stages (sample rate > 1) change depth."""
    plain = AblationSettings(component=component, quick=True)
    strict = AblationSettings(component=component, quick=True, ablated_depths_only=True)
    a, b = (plan_ablation(s, cost=real_cost, num_classes=QUICK_CLASSES) for s in (plain, strict))
    assert a.settings_key != b.settings_key  # a separate ablation in the store
    moved_stage4 = False
    for pv in b.variants:
        assert pv.arch.depths[3] == pv.match.start.depths[3], pv.variant.name
        assert abs(pv.match.flops / b.target - 1) <= 0.03, pv.variant.name
    for pv in a.variants:
        moved_stage4 |= pv.arch.depths[3] != pv.match.start.depths[3]
    assert moved_stage4  # without the option, the quick baseline deepens stage 4 (1,1,1,2)


def test_variant_yaml(tmp_path):
    comp = load_component("studies/ablations/example.yaml")
    assert comp.name == "agg-kernel" and comp.baseline.name == "kernel 5 (official)"
    one = next(v for v in comp.variants if v.name == "avg sampler in stage 1 only")
    cfg = one.apply(PRESETS["edgevit_xxs"])
    assert [s.opts["sampler"] for s in cfg.stages[:3]] == ["avg", "pick", "pick"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants:\n  - name: a\n    changes: {colour: red}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: variant 'a': changes: unknown key 'colour'"):
        load_component(bad)
    bad.write_text("variants:\n  - name: a\n    changes: {options: {sampler: median}}\n")
    with pytest.raises(ConfigError, match="option 'sampler' is 'median'"):
        load_component(bad)
    bad.write_text("variants: [\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_component(bad)


# -- FLOPs matching --------------------------------------------------------------------------------


def _fake_cost(cfg) -> CostPoint:
    """A cheap analytic cost with the real structure: fixed part plus per-block terms."""
    h, w = cfg.resolution
    fixed = 3 * 16 * h * w
    blocks = {}
    for i, s in enumerate(cfg.stages):
        px = (h // (4 * 2**i)) * (w // (4 * 2**i))
        per = px * s.width * s.width * (2 + 2 * s.mlp_ratio) * (1.3 if s.block == "sra" else 1.0)
        blocks[f"blocks{i + 1}"] = int(per) * s.depth
    return CostPoint(
        fixed + sum(blocks.values()), sum(s.width**2 * s.depth for s in cfg.stages), blocks
    )


def test_matching_is_deterministic_and_reports_the_adjustment():
    base = PRESETS["edgevit_xxs"]
    m = match_flops(base, 400_000_000, 0.03, _fake_cost)
    again = match_flops(base, 400_000_000, 0.03, _fake_cost)
    assert m.matched == again.matched and m.within
    assert abs(m.flops / 400_000_000 - 1) <= 0.03
    assert m.adjustment().startswith("depths 1,1,3,2 → ")
    # the smallest depth change that fits is chosen: nothing with a smaller change fits
    assert m.depth_change >= 1 and not m.widths_changed
    # a far budget needs the widths too, which stay divisible by the heads
    small = match_flops(base, 60_000_000, 0.03, _fake_cost)
    assert small.widths_changed and small.within
    assert all(s.width % (s.heads * 4) == 0 for s in small.matched.stages)
    assert "widths 36,72,144,288 → " in small.adjustment()
    with pytest.raises(EdgeExploreError, match="cannot match .* by changing depths \\(widths"):
        match_flops(base, 60_000_000, 0.03, _fake_cost, allow_widths=False)
    with pytest.raises(EdgeExploreError, match="reachable"):
        match_flops(base, 10**6, 0.03, _fake_cost)


def test_parse_flops():
    assert parse_flops("0.5G") == 500_000_000
    assert parse_flops("500M") == 500_000_000
    assert parse_flops(0.5) == 500_000_000
    assert parse_flops("6e6") == 6_000_000
    assert parse_flops("1.2 GFLOPs") == 1_200_000_000
    with pytest.raises(ConfigError, match="not a number like"):
        parse_flops("lots")


@pytest.fixture(scope="module")
def real_cost():
    return CachedCost()  # the real fvcore counter, shared so repeated networks count once


@pytest.mark.parametrize(
    "component", ["local-agg", "sampler", "local-prop", "global-attn", "block"]
)
def test_quick_matching_lands_within_tolerance(component, real_cost):
    plan = plan_ablation(
        AblationSettings(component=component, quick=True), cost=real_cost, num_classes=QUICK_CLASSES
    )
    assert plan.resolution == (64, 64) and plan.target == 6_000_000
    assert len(plan.variants) >= 2
    for pv in plan.variants:
        assert abs(pv.match.flops / plan.target - 1) <= 0.03, pv.variant.name
        assert pv.arch.resolution == (64, 64)
    # the real count of the matched network agrees with what the plan says
    first = plan.variants[1]
    assert real_cost(first.arch).flops == first.match.flops


@pytest.mark.slow
@pytest.mark.parametrize("component", ["local-agg", "sampler", "local-prop"])
def test_paper_setting_matching(component, real_cost):
    plan = plan_ablation(AblationSettings(component=component), cost=real_cost)
    assert plan.target == 500_000_000 and plan.resolution == (224, 224)
    assert all(abs(pv.match.rel_error) <= 0.03 for pv in plan.variants)
    base = plan.variants[0]
    assert base.match.start.depths == (1, 1, 3, 2)  # XXS scaled down, as in the paper


# -- the table -------------------------------------------------------------------------------------


def _report() -> AblationReport:
    rows = [
        VariantRow(
            "A",
            True,
            "",
            "depths 1,1,3,2 → 1,1,3,1",
            [1, 1, 3, 1],
            [36, 72, 144, 288],
            3_066_000,
            507_000_000,
            0.014,
            10.5,
            {0: 0.740, 1: 0.742, 2: 0.749},
        ),
        VariantRow(
            "B",
            False,
            "",
            "kept",
            [1, 1, 3, 3],
            [36, 72, 144, 288],
            4_645_000,
            494_000_000,
            -0.011,
            9.0,
            {0: 0.751, 1: 0.748, 2: 0.755},
        ),
        VariantRow(
            "C",
            False,
            "",
            "kept",
            [2, 1, 1, 1],
            [36, 72, 144, 288],
            2_213_000,
            485_000_000,
            -0.029,
            None,
            {0: 0.70, 1: 0.71},
            {2: "diverged"},
        ),
    ]
    rep = AblationReport(
        "demo",
        "local-agg",
        500_000_000,
        0.03,
        (224, 224),
        {"spec": "synthetic"},
        {"epochs": 3},
        "torch-cpu",
        [0, 1, 2],
        rows,
    )
    rep.compute_tests()
    return rep


def test_report_formats():
    rep = _report()
    b = rep.rows[1]
    assert b.diff == pytest.approx(0.76667, abs=1e-4) and b.holds() == "yes"
    assert rep.rows[2].test.n == 2 and rep.rows[2].holds() == "no"
    md = rep.to_markdown()
    assert (
        "| B | 1,1,3,3 | 4.645 | 0.4940 | 9.00 | 75.13 ± 0.35 | +0.77 | 0.044 | 3/3 ↑ | yes |" in md
    )
    assert "| A * | 1,1,3,1 |" in md and "baseline" in md
    assert "(2/3 seeds)" in md
    lines = rep.to_csv().splitlines()
    assert lines[0].startswith("variant,baseline,adjustment,depths")
    assert lines[0].endswith("top1_seed0,top1_seed1,top1_seed2")
    assert lines[3].split(",")[-1] == ""  # C's diverged seed 2 stays empty
    data = json.loads(rep.to_json())
    assert data["variants"][1]["paired_test"]["p"] == pytest.approx(0.04416, abs=1e-4)
    assert data["variants"][2]["incomplete_seeds"] == {"2": "diverged"}


# -- end to end ------------------------------------------------------------------------------------

TINY = [
    "--quick",
    "--data",
    "synthetic:classes=4,train=48,val=24",
    "--epochs",
    "1",
    "--seeds",
    "2",
    "--backend",
    "none",
]


def test_ablate_cli_trains_resumes_and_reuses(tmp_path, monkeypatch):
    from edgeexplore.ablation import matching
    from edgeexplore.cli import cli
    from edgeexplore.training import proxy

    db = f"sqlite:///{tmp_path / 'ab.db'}"
    real_train = proxy.train_proxy
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(proxy, "train_proxy", interrupted)
    runner = CliRunner()
    args = ["ablate", "local-agg", *TINY, "--storage", db, "--name", "t"]
    res = runner.invoke(cli, args)
    assert res.exit_code != 0 and calls["n"] == 3  # click turns Ctrl-C into "Aborted!"
    # resume: the two finished runs are kept, the interrupted one and the rest are trained
    monkeypatch.setattr(proxy, "train_proxy", real_train)
    res = runner.invoke(cli, [*args, "--format", "csv"])
    assert res.exit_code == 0, res.output
    assert "reused 2 of 6 runs, trained 4" in res.output
    rows = [
        line for line in res.stdout.splitlines() if line.startswith(("LocalAgg", "none", "LSA"))
    ]
    assert len(rows) == 3

    # a rerun trains nothing (nor counts FLOPs again: the matching is stored) and says so
    def no_training(*args, **kwargs):
        raise AssertionError("a rerun must not train or count")

    monkeypatch.setattr(proxy, "train_proxy", no_training)
    monkeypatch.setattr(matching, "count_cost_fn", no_training)
    out = tmp_path / "table.md"
    res = runner.invoke(cli, [*args, "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert "reused 6 of 6 runs, trained 0" in res.output
    assert "LocalAgg *" in res.output and "none (SRA)" in res.output
    assert out.read_text().startswith("**t: local-agg at 0.006 GFLOPs ±3%")
    rep = load_report("t", db)
    assert [r.n for r in rep.rows] == [2, 2, 2]
    for r in rep.rows:
        assert abs(r.flops / 6e6 - 1) <= 0.03
        assert all(0.0 <= a <= 1.0 for a in r.accuracies.values())
    # other settings under the same name are refused with one clear sentence
    res = runner.invoke(
        cli, ["ablate", "local-agg", *TINY, "--lr", "0.01", "--storage", db, "--name", "t"]
    )
    assert res.exit_code != 0 and "already exists with other settings" in str(res.exception)


def test_runs_are_shared_between_ablations(tmp_path, monkeypatch):
    """sampler's and local-prop's baselines are the same network: trained once."""
    from edgeexplore.training import proxy

    db = f"sqlite:///{tmp_path / 'ab.db'}"
    base = {
        "quick": True,
        "data": "synthetic:classes=4,train=48,val=24",
        "epochs": 1,
        "seeds": 1,
        "backend": "none",
        "storage": db,
    }
    messages: list[str] = []
    rep = run_ablation(
        AblationSettings(component="global-attn", **base), echo=messages.append, progress=False
    )
    assert (rep.reused, rep.trained) == (0, 2)
    trained = []
    real = proxy.train_proxy
    monkeypatch.setattr(proxy, "train_proxy", lambda *a, **k: trained.append(1) or real(*a, **k))
    rep = run_ablation(
        AblationSettings(component="sampler", **base), echo=messages.append, progress=False
    )
    # the LGL baseline of global-attn is sampler's 'pick' baseline: reused, the others trained
    assert rep.reused == 1 and rep.trained == 3 and len(trained) == 3
    assert any("reused" in m and "from an earlier run" in m for m in messages)
    assert QUICK_BASE.resolution == (64, 64)


@pytest.mark.parametrize("spec", ["studies/ablations/example.yaml", "example"])
def test_match_only_on_a_variant_file(spec, tmp_path, monkeypatch):
    from edgeexplore.cli import cli

    # from another working directory too: the shipped variant lists are found by name
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["ablate", spec, "--quick", "--match-only", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["target"] == 6_000_000 and data["resolution"] == [64, 64]
    names = [v["variant"] for v in data["variants"]]
    assert names[0] == "kernel 5 (official) *" and len(names) == 5
    assert all(abs(v["rel_error"]) <= 0.03 for v in data["variants"])


@pytest.mark.parametrize(("output", "message"), [
    ("no/such/folder/table.csv", "folder .* does not exist"),
    ("table.txt", "give --format csv, json or markdown"),
])
def test_an_unwritable_output_is_refused_before_training(tmp_path, capsys, output, message):
    from edgeexplore.cli import main

    db = tmp_path / "a.db"
    assert main(["ablate", "local-agg", "--quick", "--output", str(tmp_path / output),
                 "--storage", str(db)]) == 1
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1
    assert not db.exists()  # refused before the store was opened, let alone a run trained
