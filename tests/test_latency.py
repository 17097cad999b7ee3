"""Latency backends: statistics, sampling, cache, command, lut, energy, entry points."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeexplore.config import BLOCKS, ArchConfig, StageConfig
from edgeexplore.errors import EdgeExploreError
from edgeexplore.latency import (
    GROUP,
    Measurement,
    SamplingPolicy,
    Stats,
    get_backend,
    list_backends,
    measure_arch,
    sample_loop,
)
from edgeexplore.latency import energy as energy_mod
from edgeexplore.latency.base import resolve_clock, running_median_stable
from edgeexplore.store import open_store

TOOLS = Path(__file__).parent / "latency_tools"
EXAMPLES = Path(__file__).resolve().parent / "latency_plugin_example"
#: settings that keep each timing run to a fraction of a second
QUICK = {"budget_s": 0.15, "warmup": 2, "warmup_s": 0.0, "min_samples": 5, "max_samples": 60}


def tiny(block: str = "lgl", width: int = 16, res: int = 64, depth: int = 1, **opts) -> ArchConfig:
    stages = tuple(
        StageConfig(depth=depth, width=width * m, heads=1, mlp_ratio=2.0, sample_rate=r,
                    block=block, options=opts)
        for m, r in zip((1, 2, 4, 8), (2, 2, 1, 1))
    )
    return ArchConfig(stages=stages, resolution=(res, res), num_classes=10)


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 4))


# -- statistics and sampling -----------------------------------------------------------------


def test_stats_on_known_samples():
    s = Stats.from_samples([float(x) for x in range(1, 11)])  # 1..10
    assert s.median == 5.5 and s.mean == 5.5 and s.count == 10
    assert s.p10 == pytest.approx(1.9) and s.p90 == pytest.approx(9.1)
    assert s.iqr == pytest.approx(7.75 - 3.25)
    assert s.std == pytest.approx(np.std(np.arange(1, 11), ddof=1))
    assert s.cv == pytest.approx(s.std / 5.5)
    one = Stats.from_samples([4.0])
    assert (one.median, one.std, one.cv, one.iqr) == (4.0, 0.0, 0.0, 0.0)
    with pytest.raises(EdgeExploreError, match="no samples"):
        Stats.from_samples([])
    with pytest.raises(EdgeExploreError, match="NaN"):
        Stats.from_samples([1.0, float("nan")])


def test_measurement_keeps_samples_and_round_trips():
    m = Measurement.from_samples("x", [3.0, 1.0, 2.0], warmup=4, threads=2,
                                 input_shape=(8, 3, 32, 32))
    assert m.samples_ms == [3.0, 1.0, 2.0] and m.median_ms == 2.0 and m.batch == 8
    assert m.per_item_ms == pytest.approx(0.25) and m.warmup == 4 and m.threads == 2
    back = Measurement.from_dict(m.to_dict())
    assert back == m and back.input_shape == (8, 3, 32, 32)


def test_running_median_stability_rule():
    assert running_median_stable([10.0] * 5, window=5, rel_tol=0.01)
    assert not running_median_stable([10.0] * 4, window=5, rel_tol=0.01)
    assert not running_median_stable([10.0, 10.0, 10.0, 10.0, 11.0], window=5, rel_tol=0.01)


def test_sample_loop_stops_when_stable_with_a_fake_timer():
    calls = []
    policy = SamplingPolicy(warmup=3, warmup_s=0.0, min_samples=8, window=4, rel_tol=0.01,
                            budget_s=60.0)
    samples, warm, reason, energies = sample_loop(lambda: calls.append(1), policy,
                                                  timer=lambda fn: fn() or 5.0)
    assert reason == "stable" and warm == 3 and samples == [5.0] * 8 and energies is None
    assert len(calls) == 3 + 8


def test_sample_loop_budget_and_max_samples():
    values = iter(range(1, 10_000))
    policy = SamplingPolicy(warmup=0, warmup_s=0.0, min_samples=3, max_samples=25, budget_s=60.0)
    samples, _, reason, _ = sample_loop(lambda: None, policy, timer=lambda fn: float(next(values)))
    assert reason == "max_samples" and len(samples) == 25  # a drifting median never settles

    def slow(fn):
        time.sleep(0.02)
        return float(next(values))

    t0 = time.perf_counter()
    samples, _, reason, _ = sample_loop(lambda: None, SamplingPolicy(
        warmup=0, warmup_s=0.0, max_samples=10_000, budget_s=0.2), timer=slow)
    assert reason == "budget" and 3 <= len(samples) < 30 and time.perf_counter() - t0 < 2


def test_clock_resolution():
    assert resolve_clock("auto", 1) == "thread-cpu"
    assert resolve_clock("auto", 4) == "wall"
    assert resolve_clock("wall", 1) == "wall"
    with pytest.raises(EdgeExploreError, match="clock must be one of"):
        resolve_clock("sundial", 1)


# -- in-process backends -----------------------------------------------------------------------


def test_torch_cpu_measures_with_fixed_threads_and_restores_them():
    torch.set_num_threads(1)
    b = get_backend("torch-cpu", threads=2, **QUICK)
    m = b.measure(small_net(), (2, 3, 16, 16))
    assert m.backend == "torch-cpu" and m.threads == 2 and m.batch == 2
    assert m.count == len(m.samples_ms) >= 3 and m.warmup >= 2
    assert m.median_ms == pytest.approx(float(np.median(m.samples_ms)))
    assert m.p10_ms <= m.median_ms <= m.p90_ms
    assert m.stop_reason in ("stable", "budget", "max_samples")
    assert m.extra["clock"] == "wall"  # two threads: CPU time would sum both
    assert m.settings["threads"] == 2 and m.settings["budget_s"] == 0.15
    assert m.device["cpu"] and m.device["torch"] == torch.__version__
    assert torch.get_num_threads() == 1
    m1 = get_backend("torch-cpu", **QUICK).measure(small_net(), (1, 3, 16, 16))
    assert m1.threads == 1 and m1.extra["clock"] == "thread-cpu"


def test_backend_settings_are_validated():
    with pytest.raises(EdgeExploreError, match="no setting 'budget'"):
        get_backend("torch-cpu", budget=3)
    with pytest.raises(EdgeExploreError, match="threads must be a positive integer"):
        get_backend("torch-cpu", threads=0)
    with pytest.raises(EdgeExploreError, match="unknown latency backend 'nope'"):
        get_backend("nope")


LGL_VARIANTS = [
    {"local_agg": "lsa", "window": 4, "sampler": "max", "local_prop": "bilinear"},
    {"agg_kernel": 3, "sampler": "center", "local_prop": "nearest"},
    {"sampler": "avg"},
]


@pytest.mark.parametrize("block,opts", [(b, {}) for b in sorted(BLOCKS)] +
                         [("lgl", o) for o in LGL_VARIANTS])
def test_torchscript_graph_matches_eager_on_every_block_kind(block, opts):
    from edgeexplore.models import build

    torch.manual_seed(0)
    model = build(tiny(block, **opts)).eval()
    b = get_backend("torchscript", **QUICK)
    x = b.make_input((1, 3, 64, 64))
    run = b.prepare(model, x)
    with torch.inference_mode():
        ref = model(x)
    assert torch.allclose(run(), ref, atol=1e-4)


def test_onnxruntime_and_torchscript_measure(tmp_path):
    for name in ("onnxruntime", "torchscript"):
        ok, why = get_backend(name).available()
        assert ok, why
        m = measure_arch(tiny(), backend=name, store=open_store(str(tmp_path / "c.db")), **QUICK)
        assert m.backend == name and m.count >= 3 and m.median_ms > 0
    assert "onnxruntime" in m.device or name == "torchscript"


def test_cuda_says_why_it_is_unavailable():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    ok, why = get_backend("cuda").available()
    assert not ok and ("CUDA" in why or "GPU" in why)
    with pytest.raises(EdgeExploreError, match="not available here"):
        measure_arch(tiny(), backend="cuda", cache_results=False)


def test_list_backends_reports_every_backend():
    infos = {i.name: i for i in list_backends()}
    assert {"torch-cpu", "torchscript", "torch-compile", "onnxruntime", "cuda", "command",
            "lut"} <= set(infos)
    assert infos["torch-cpu"].available and infos["onnxruntime"].available
    assert not infos["command"].available and "command template" in infos["command"].reason
    probed = {i.name: i for i in list_backends({"command": {"command": [sys.executable, "x"]}})}
    assert probed["command"].available


# -- cache -------------------------------------------------------------------------------------


def test_cache_hit_avoids_measuring_again(tmp_path, monkeypatch):
    from edgeexplore.latency.torch_cpu import TorchCPUBackend

    calls = []
    real = TorchCPUBackend.measure

    def counting(self, model, shape):
        calls.append(shape)
        return real(self, model, shape)

    monkeypatch.setattr(TorchCPUBackend, "measure", counting)
    db = open_store(str(tmp_path / "cache.db"))
    cfg = tiny()
    first = measure_arch(cfg, store=db, **QUICK)
    again = measure_arch(cfg, store=db, **QUICK)
    assert len(calls) == 1 and not first.cached and again.cached
    assert again.samples_ms == first.samples_ms and again.median_ms == first.median_ms
    measure_arch(cfg, store=db, batch=2, **QUICK)  # another key: measured
    measure_arch(cfg, store=db, **{**QUICK, "budget_s": 0.1})  # other settings: measured
    assert len(calls) == 3
    forced = measure_arch(cfg, store=db, force=True, **QUICK)
    assert len(calls) == 4 and not forced.cached
    assert measure_arch(cfg, store=db, **QUICK).samples_ms == forced.samples_ms  # replaced

    from sqlalchemy import text

    with db.engine.connect() as conn:
        rows = conn.execute(text("select arch_hash, input_shape, batch, backend, median_ms, "
                                 "count from latency_measurements")).all()
    assert len(rows) == 3 and {r.input_shape for r in rows} == {"1x3x64x64", "2x3x64x64"}
    assert all(r.arch_hash == cfg.hash and r.backend == "torch-cpu" for r in rows)


# -- command backend ---------------------------------------------------------------------------


def command_backend(script: str, *extra: str, **kw):
    return get_backend("command", command=[sys.executable, str(TOOLS / script), *extra], **kw)


def test_command_backend_parses_every_run():
    b = command_backend("bench_ok.py", "{model}", "{input_shape}", "{repeats}", repeats=6,
                        pattern=r"latency (\S+) ms")
    assert b.available()[0]
    m = b.measure(small_net(), (1, 3, 16, 16))
    assert m.samples_ms == [10.0, 10.5, 11.0, 11.5, 12.0, 12.5]
    assert m.median_ms == pytest.approx(11.25) and m.count == 6 and m.backend == "command"
    assert m.settings["command"][1].endswith("bench_ok.py") and m.energy_j is None


def test_command_backend_units_and_string_template():
    b = get_backend("command", command=f"{sys.executable} -c 'print(\"mean=2500 us\")'")
    m = b.measure(small_net(), (1, 3, 16, 16))
    assert m.samples_ms == [2.5]  # the default pattern reads the unit
    b.command = b.command[:2] + ["print('nothing useful')"]
    with pytest.raises(EdgeExploreError, match="no latency matching"):
        b.measure(small_net(), (1, 3, 16, 16))


def test_command_backend_failure_shows_stderr():
    b = command_backend("bench_fail.py")
    with pytest.raises(EdgeExploreError, match="exit status 3.*device 'board0' not found"):
        b.measure(small_net(), (1, 3, 16, 16))


def test_command_backend_timeout_kills_the_tool():
    b = command_backend("bench_hang.py", timeout_s=1.5)
    t0 = time.perf_counter()
    with pytest.raises(EdgeExploreError, match="within 1.5 s.*waiting for the device"):
        b.measure(small_net(), (1, 3, 16, 16))
    assert time.perf_counter() - t0 < 15  # the child holding the pipes was killed too


def test_command_backend_placeholders_are_not_a_shell():
    b = get_backend("command",
                    command=["tool", "--graph={model}", "--n", "{batch}", "{x}", "$HOME;ls"])
    args = b.arguments({"model": "/tmp/m v.onnx", "batch": 4})
    assert args == ["tool", "--graph=/tmp/m v.onnx", "--n", "4", "{x}", "$HOME;ls"]
    assert not b.available()[0]  # "tool" is not installed


# -- lut ---------------------------------------------------------------------------------------


def test_lut_predicts_tiny_archs_within_error(tmp_path):
    from edgeexplore.latency.lut import trace_units
    from edgeexplore.models import build

    db = open_store(str(tmp_path / "lut.db"))
    base = {"budget_s": 0.4, "min_samples": 10, "max_samples": 200}
    lut = get_backend("lut", calibrate=2, unit_budget_s=0.1, **base)
    lut.use_store(db)  # as measure_arch hands over the store it caches in
    archs = [tiny(width=16), tiny(width=24, depth=2), tiny(width=16, depth=3), tiny(width=32)]
    preds = []
    for cfg in archs:
        preds.append(lut.measure(build(cfg).eval(), (1, 3, 64, 64)))
    assert [p.extra["calibration_models"] for p in preds] == [1, 2, 2, 2]
    assert preds[2].extra["units_timed_now"] == 0  # same blocks as archs[0], only deeper
    assert preds[0].extra["error"]["method"] == "in-sample"
    assert preds[1].extra["error"]["method"] == "leave-one-out"
    # the prediction is the table's sum plus the calibrated constant; how close that comes to a
    # measurement is a timing question for benchmarks/latency_quality.py, not a unit test
    for p in preds:
        assert p.median_ms == pytest.approx(
            max(p.extra["unit_sum_ms"] + p.extra["constant_ms"], 1e-6)
        )
        assert p.extra["units"] == len(trace_units(build(archs[preds.index(p)]).eval(),
                                                   (1, 3, 64, 64)))
    # a deeper stage of the same blocks adds its extra blocks' (positive) table entries; whether a
    # wider model is slower is left to timing on a quiet machine, not asserted here
    assert preds[2].extra["unit_sum_ms"] > preds[0].extra["unit_sum_ms"]
    units = trace_units(build(archs[1]).eval(), (1, 3, 64, 64))
    assert [u.name for u in units][:3] == ["stem", "stages.0.blocks.0", "stages.0.blocks.1"]
    assert units[1].signature == units[2].signature  # identical blocks share one table entry
    # a fresh backend object (another process) reads the same table: nothing to time again
    again = get_backend("lut", calibrate=2, unit_budget_s=0.1, **base)
    again.use_store(db)
    p = again.measure(build(archs[1]).eval(), (1, 3, 64, 64))
    assert p.extra["units_timed_now"] == 0 and p.median_ms == pytest.approx(preds[1].median_ms)


@pytest.mark.parametrize("macro", ["edgevit", "edgenext"])
def test_lut_derived_unit_shapes_match_a_traced_forward_pass(macro):
    from edgeexplore.config import MACROS
    from edgeexplore.latency.lut import analytic_units, trace_units
    from edgeexplore.models import build

    if macro not in MACROS:
        pytest.skip(f"macro {macro} is not registered")
    for block in sorted(BLOCKS):
        model = build(tiny(block, res=96, depth=2).replace(macro=macro)).eval()
        derived = analytic_units(model, (2, 3, 96, 64))
        traced = trace_units(model, (2, 3, 96, 64))
        assert [(u.name, u.input_shape, u.signature) for u in derived] == \
            [(u.name, u.input_shape, u.signature) for u in traced], block


# -- energy ------------------------------------------------------------------------------------


def fake_rapl(root: Path, energy_uj: int, max_uj: int = 1000) -> Path:
    d = root / "intel-rapl:0"
    d.mkdir(parents=True, exist_ok=True)
    (d / "energy_uj").write_text(str(energy_uj))
    (d / "max_energy_range_uj").write_text(str(max_uj))
    (root / "intel-rapl:0:0").mkdir(exist_ok=True)  # a sub-domain: must not be double counted
    (root / "intel-rapl:0:0" / "energy_uj").write_text("5")
    return d


def test_rapl_counter_wraparound(tmp_path):
    d = fake_rapl(tmp_path, 900)
    meter = energy_mod.RaplMeter(tmp_path)
    assert meter.available() == (True, "rapl:intel-rapl:0")
    (d / "energy_uj").write_text("950")
    assert meter.read_j() == pytest.approx(50e-6)
    (d / "energy_uj").write_text("30")  # wrapped at 1000
    assert meter.read_j() == pytest.approx((50 + 81) * 1e-6)


def test_energy_not_available_here_is_explained(tmp_path, monkeypatch):
    ok, why = energy_mod.RaplMeter(tmp_path / "missing").available()
    assert not ok and why.startswith("not available here")
    monkeypatch.setattr(energy_mod, "POWERCAP", tmp_path / "missing")
    m = get_backend("torch-cpu", **QUICK).measure(small_net(), (1, 3, 8, 8))
    assert m.energy_j is None and m.energy_note.startswith("not available here")
    with pytest.raises(EdgeExploreError, match="energy was requested"):
        get_backend("torch-cpu", energy="on", **QUICK).measure(small_net(), (1, 3, 8, 8))
    ok, why = energy_mod.NvmlMeter().available()
    if not ok:
        assert why.startswith("not available here")


def test_energy_per_inference_from_rapl(tmp_path, monkeypatch):
    d = fake_rapl(tmp_path, 0, max_uj=10**12)
    monkeypatch.setattr(energy_mod, "POWERCAP", tmp_path)

    class Ticking(nn.Module):  # every inference "consumes" 2000 µJ on the fake counter
        def forward(self, x):
            value = int((d / "energy_uj").read_text()) + 2000
            (d / "energy_uj").write_text(str(value))
            return x

    m = get_backend("torch-cpu", **QUICK).measure(Ticking(), (1, 3, 8, 8))
    e = m.energy_j
    assert e["count"] == m.count and e["median_j"] == pytest.approx(0.002)
    assert e["samples_j"] == pytest.approx([0.002] * m.count) and e["source"] == "rapl:intel-rapl:0"


# -- entry points ------------------------------------------------------------------------------


def install_fake_distribution(root: Path, name: str, entry_points: str) -> None:
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_entry_point_backend_from_another_package(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, "edgeexplore_channels_last", f"""
        [{GROUP}]
        torch-cpu-cl = edgeexplore_channels_last:ChannelsLastBackend
        torch-cpu = edgeexplore_channels_last:ChannelsLastBackend
        broken = edgeexplore_channels_last:DoesNotExist
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the example package's source
    infos = {i.name: i for i in list_backends()}
    assert infos["torch-cpu-cl"].available and "channels-last" in infos["torch-cpu-cl"].reason
    assert infos["torch-cpu-cl"].origin.startswith("entry point")
    assert infos["torch-cpu"].origin == "builtin"  # a package cannot replace a built-in
    assert not infos["broken"].available and "failed to load" in infos["broken"].reason
    m = measure_arch(tiny(), backend="torch-cpu-cl", store=open_store(str(tmp_path / "c.db")),
                     **QUICK)
    assert m.backend == "torch-cpu-cl" and m.count >= 3
    with pytest.raises(EdgeExploreError, match="'broken'.*failed to load"):
        get_backend("broken")
