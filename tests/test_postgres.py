"""The store on a real PostgreSQL server: a search and the query commands, as on SQLite."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tiny import TINY

from edgeexplore.cli import cli, main

pytestmark = pytest.mark.postgres



def test_search_and_queries_on_postgresql(tmp_path, pg_url):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    assert main(["search", str(recipe), "--budget", "2", "--storage", pg_url, "--quiet"]) == 0
    res = CliRunner().invoke(cli, ["trials", "list", "--storage", pg_url, "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["state"] for r in rows] == ["complete", "complete"]
    assert all(r["latency_ms"] > 0 and r["flops"] > 0 for r in rows)
    # resuming on the same database extends the same study
    assert main(["search", str(recipe), "--budget", "1", "--storage", pg_url, "--quiet"]) == 0
    res = CliRunner().invoke(cli, ["studies", "--storage", pg_url, "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "tiny" in res.output
    res = CliRunner().invoke(cli, ["pareto", "--study", "tiny", "--storage", pg_url])
    assert res.exit_code == 0, res.output

    # every query command answers on PostgreSQL as on a SQLite copy of the same study
    lite = f"sqlite:///{tmp_path / 'copy.db'}"
    assert main(["copy-study", "tiny", "--from", pg_url, "--to", lite]) == 0
    for url in (pg_url, lite):
        rows = _json("trials", "list", "--storage", url, "--where", "state == 'complete'",
                     "--sort", "-accuracy")
        assert len(rows) == 3 and rows[0]["accuracy"] >= rows[-1]["accuracy"]
    pg_ids = [r["id"] for r in _json("trials", "list", "--storage", pg_url)]
    lite_ids = [r["id"] for r in _json("trials", "list", "--storage", lite)]
    for pg_id, lite_id in zip(pg_ids, lite_ids, strict=True):
        shown = [_json("trials", "show", str(i), "--storage", url, "--format", "json")
                 for i, url in ((pg_id, pg_url), (lite_id, lite))]
        assert shown[0]["latency"] and shown[0]["curve"]
        assert _without_ids(shown[0]) == _without_ids(shown[1])
    exports = [_json("trials", "export", "--storage", url, "--format", "json")
               for url in (pg_url, lite)]
    assert len(exports[0]) == 3 and all(r["config"] for r in exports[0])
    assert _without_ids(exports[0]) == _without_ids(exports[1])
    fronts = [_json("pareto", "--study", "tiny", "--no-presets", "--format", "json",
                    "--storage", url) for url in (pg_url, lite)]
    assert fronts[0]["front"] and fronts[0]["hypervolume"] > 0
    assert _without_ids(fronts[0]) == _without_ids(fronts[1])
    studies = [_json("studies", "--storage", url, "--format", "json") for url in (pg_url, lite)]
    assert studies[0] == studies[1] and studies[0][0]["trials"] == 3


def _json(*args: str):
    res = CliRunner().invoke(cli, [*args] if "--format" in args else [*args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


#: keys that hold a row id of one particular store (the copy has its own)
IDS = {"id", "optuna_trial_id", "optuna_study_id", "environment_id", "reused_from"}


def _without_ids(value):
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in IDS}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def test_ablation_on_postgresql(pg_url):
    tiny = ["--quick", "--data", "synthetic:classes=4,train=48,val=24", "--epochs", "1",
            "--seeds", "2", "--backend", "none"]
    args = ["ablate", "local-agg", *tiny, "--storage", pg_url, "--name", "t", "--format", "json"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    shown = _json("ablation-show", "t", "--storage", pg_url)
    assert shown["runs"]["total"] == 6 and len(shown["variants"]) == 3
    assert all(len(v["accuracy_per_seed"]) == 2 and v["flops"] > 0 for v in shown["variants"])
    res = CliRunner().invoke(cli, args)  # a rerun reuses every run stored on the server
    assert res.exit_code == 0, res.output
    assert "reused 6 of 6 runs, trained 0" in res.output
    assert _json("ablation-show", "t", "--storage", pg_url) == shown
    table = CliRunner().invoke(cli, ["ablation-show", "t", "--storage", pg_url])
    assert table.exit_code == 0 and "LocalAgg" in table.output


def test_measure_caches_on_postgresql(pg_url):
    args = ["measure", "edgevit_xxs", "--resolution", "32", "--set", "budget_s=0.05",
            "--storage", pg_url, "--json"]
    first = json.loads(_invoke_ok(args))
    second = json.loads(_invoke_ok(args))
    assert not first["latency"]["cached"] and second["latency"]["cached"]
    assert second["latency"]["median_ms"] == first["latency"]["median_ms"] > 0


def _invoke_ok(args: list[str]) -> str:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return res.output
