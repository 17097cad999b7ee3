"""``edgeexplore measure`` and ``edgeexplore backends`` through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeexplore.cli import cli, main
from edgeexplore.config import ArchConfig, StageConfig

TOOLS = Path(__file__).parent / "latency_tools"
QUICK = ["--set", "budget_s=0.15", "--set", "warmup_s=0", "--set", "min_samples=5"]


@pytest.fixture()
def tiny_json(tmp_path: Path) -> Path:
    cfg = ArchConfig(
        stages=tuple(StageConfig(depth=1, width=w, heads=1, mlp_ratio=2.0, sample_rate=r)
                     for w, r in zip((16, 32, 64, 128), (2, 2, 1, 1))),
        resolution=(64, 64), num_classes=10,
    )
    path = tmp_path / "tiny.json"
    path.write_text(cfg.to_json(indent=1))
    return path


def run_json(args: list[str]) -> dict:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_measure_reports_the_official_cost_of_edgevit_xxs():
    out = run_json(["measure", "edgevit_xxs", "--json", "--no-latency"])
    assert out["params"] == 4_067_704 and out["flops"] == 557_457_984
    assert set(out["per_stage_flops"]) == {"stem", "stage1", "stage2", "stage3", "stage4", "head"}
    assert sum(out["per_stage_flops"].values()) == out["flops"] and out["latency"] is None


def test_measure_latency_is_cached(tiny_json, tmp_path):
    db = str(tmp_path / "s.db")
    first = run_json(["measure", str(tiny_json), "--json", "--storage", db, "--batch", "2", *QUICK])
    lat = first["latency"]
    assert lat["backend"] == "torch-cpu" and lat["batch"] == 2 and lat["threads"] == 1
    assert lat["count"] == len(lat["samples_ms"]) >= 3 and not lat["cached"]
    assert lat["input_shape"] == [2, 3, 64, 64] and lat["energy_note"]
    second = run_json(["measure", str(tiny_json), "--json", "--storage", db, "--batch", "2",
                       *QUICK])
    assert second["latency"]["cached"] and second["latency"]["samples_ms"] == lat["samples_ms"]
    forced = run_json(["measure", str(tiny_json), "--json", "--storage", db, "--batch", "2",
                       "--force", *QUICK])
    assert not forced["latency"]["cached"]


def test_measure_table_output(tiny_json, tmp_path):
    db = str(tmp_path / "t.db")
    result = CliRunner().invoke(cli, ["measure", str(tiny_json), "--storage", db,
                                      "--backend", "onnxruntime", "--threads", "1", *QUICK])
    assert result.exit_code == 0, result.output
    for text in ("parameters", "FLOPs", "stage3", "median (ms)", "p90 (ms)", "CV", "energy",
                 "not available here", "onnxruntime"):
        assert text in result.output


def test_measure_with_the_command_backend(tiny_json, tmp_path):
    template = f"{sys.executable} {TOOLS / 'bench_ok.py'} {{model}} {{input_shape}} 4"
    out = run_json(["measure", str(tiny_json), "--json", "--no-cache", "--backend", "command",
                    "--set", f"command={template}", "--set", r"pattern=latency (\S+) ms"])
    assert out["latency"]["samples_ms"] == [10.0, 10.5, 11.0, 11.5]


def test_measure_errors_are_one_line(tiny_json, capsys):
    fail = f"command={sys.executable} {TOOLS / 'bench_fail.py'}"
    args = ["measure", str(tiny_json), "--no-cache", "--backend", "command", "--set", fail]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: command") and "device 'board0' not found" in err
    assert main(["measure", str(tiny_json), "--no-cache", "--backend", "warp-drive"]) == 1
    assert "unknown latency backend 'warp-drive'" in capsys.readouterr().err
    assert main(["measure", str(tiny_json), "--no-cache", "--set", "nonsense"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err


def test_backends_lists_all_with_reasons():
    result = CliRunner().invoke(cli, ["backends"])
    assert result.exit_code == 0, result.output
    for name in ("torch-cpu", "torchscript", "torch-compile", "onnxruntime", "cuda", "command",
                 "lut"):
        assert name in result.output
    rows = {r["name"]: r for r in run_json(["backends", "--json"])}
    assert rows["torch-cpu"]["available"] and rows["onnxruntime"]["available"]
    assert not rows["command"]["available"] and rows["command"]["reason"]
    probed = {r["name"]: r for r in run_json(
        ["backends", "--json", "--backend", "command", "--set", f"command={sys.executable} x.py"])}
    assert probed["command"]["available"]


@pytest.mark.parametrize(("settings", "message"), [
    (["--set", "bogus=1"], "has no setting 'bogus' (its settings: command, pattern"),
    (["--set", "command=/nonexistent/tool {model}"], "'/nonexistent/tool' was not found"),
])
def test_a_failed_probe_says_why_and_exits_non_zero(capsys, settings, message):
    assert main(["backends", "--backend", "command", *settings]) == 1
    captured = capsys.readouterr()
    assert "Latency backends" in captured.out  # the table still shows every backend
    assert message in captured.err and captured.err.count("\n") == 1
