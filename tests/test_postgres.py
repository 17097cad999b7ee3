"""The store on a real PostgreSQL server: a search and the query commands, as on SQLite."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeexplore.cli import cli, main

pytestmark = pytest.mark.postgres

TINY = """
name: tiny
space: edgevit-tiny
resolution: 32
data: {spec: synthetic, subset: 3, val_subset: 2}
proxy: {epochs: 1, batch_size: 10, warmup_epochs: 0, lr: 0.003, min_lr: 0.0}
objectives: [accuracy, latency_ms]
backend: {name: torch-cpu, threads: 1, budget_s: 0.05, warmup: 1, min_samples: 3,
          max_samples: 5}
sampler: random
seed: 0
early_stopping: false
"""


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
