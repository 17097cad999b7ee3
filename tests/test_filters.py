"""The --where / --sort language: grammar, field checks, and SQL that must never run."""

from __future__ import annotations

import json
import sqlite3

import pytest

from edgeexplore import store
from edgeexplore.analysis import query
from edgeexplore.analysis.filters import FilterError, compile_filter, parse, tokenize
from edgeexplore.config import PRESETS
from edgeexplore.store import db

# (accuracy, latency_ms, energy_mj, state, stage-3 block of the preset variant)
ROWS = [
    (0.71, 8.0, None, "complete", "lgl"),
    (0.65, 12.0, 2.5, "complete", "lgl"),
    (0.55, 4.0, None, "complete", "sra"),
    (0.80, 25.0, 7.0, "complete", "conv"),
    (None, None, None, "infeasible", "lgl"),
    (0.62, 9.5, 1.0, "pruned", "sra"),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    path = tmp_path_factory.mktemp("filters") / "f.db"
    url = f"sqlite:///{path}"
    base = PRESETS["edgevit_xxs"]
    with db.session_scope(url) as s:
        for i, (acc, lat, energy, state, block) in enumerate(ROWS):
            cfg = base.with_stage(2, block=block, options={} if block != "lgl" else
                                  {"local_agg": "lsa" if i == 1 else "conv"})
            store.upsert_architecture(s, cfg)
            s.add(store.TrialResult(study="s", number=i, arch_hash=cfg.hash, state=state,
                                    accuracy=acc, latency_ms=lat, energy_mj=energy,
                                    flops=1_000_000 * (i + 1), params=1000 * (i + 1)))
    return url


def numbers(url, where, sort=None):
    return [t.number for t in query.list_trials(where=where, sort=sort, storage=url)]


def snapshot(url: str) -> dict:
    """Every table and its row count, read with plain sqlite3 (no SQLAlchemy involved)."""
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        names = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        counts = {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
        dump = [json.dumps(r) for r in con.execute(
            "SELECT id, study, state, accuracy FROM trial_results ORDER BY id")]
    finally:
        con.close()
    return {"counts": counts, "rows": dump}


def test_issue_example(url):
    got = numbers(url, 'latency_ms < 10 and accuracy > 0.6 and stage3.block == "lgl"')
    assert got == [0]


@pytest.mark.parametrize(("where", "expected"), [
    ("accuracy >= 0.65", [0, 1, 3]),
    ("0.65 <= accuracy", [0, 1, 3]),  # a value on the left is flipped
    ("accuracy > 0.6 or latency_ms < 5 and state == 'complete'", [0, 1, 2, 3, 5]),
    ("(accuracy > 0.6 or latency_ms < 5) and state == 'complete'", [0, 1, 2, 3]),
    ("not accuracy > 0.6", [2]),  # NULL accuracy is neither
    ("state in ['pruned', 'infeasible']", [4, 5]),
    ("stage3.block not in ['lgl']", [2, 3, 5]),
    ("energy_mj == null", [0, 2, 4]),
    ("energy_mj != null and energy_mj < 3", [1, 5]),
    ("stage3.options.local_agg == 'lsa'", [1]),
    ("stage3.depth == 3 and stage1.width = 36 AND stage4.sample_rate == 1", [0, 1, 2, 3, 4, 5]),
    ("flops <= 2e6", [0, 1]),
    ("latency_ms > -1 and params < 2500", [0, 1]),
    ('study == "s" and stage3.block <> "conv"', [0, 1, 2, 4, 5]),
    ("", [0, 1, 2, 3, 4, 5]),
])
def test_semantics(url, where, expected):
    assert numbers(url, where) == expected


def test_sort_descending_nulls_last(url):
    assert numbers(url, None, sort="-accuracy") == [3, 0, 1, 5, 2, 4]
    assert numbers(url, None, sort="stage3.block,-latency_ms") == [3, 1, 0, 4, 5, 2]
    with pytest.raises(FilterError, match="unknown field 'accurcy'.*did you mean 'accuracy'"):
        numbers(url, None, sort="-accurcy")


def test_unknown_field_lists_valid_ones(url):
    with pytest.raises(FilterError) as e:
        numbers(url, "latncy < 3")
    msg = str(e.value)
    assert msg.startswith("unknown field 'latncy'")
    for name in ("accuracy", "latency_ms", "flops", "params", "energy_mj", "state", "study",
                 "stageN.block", "stageN.depth", "stageN.options.local_agg", "(N = 1..4)"):
        assert name in msg
    with pytest.raises(FilterError, match="unknown field 'stage5.block'"):
        numbers(url, "stage5.block == 'lgl'")


@pytest.mark.parametrize(("where", "message"), [
    ("stage3.block > 3", "stage3.block is text"),
    ("accuracy == 'high'", "accuracy is a number"),
    ("accuracy", "compare it with a value"),
    ("1 < 2", "compares two values"),
    ("accuracy < null", "null can only be tested"),
    ("accuracy >", "the filter ends there"),
    ("(accuracy > 1", r"expected '\)'"),
    ("accuracy in 0.5", r"expected '\[' to start a list"),
    ("accuracy > 0.5 latency_ms < 3", "after a complete expression"),
    ("state == 'complete", "no closing"),
    ("1e > 3", "neither a number nor a field"),
])
def test_errors_are_clear(url, where, message):
    with pytest.raises(FilterError, match=message):
        numbers(url, where)


SMUGGLED = [
    "accuracy > 0; DROP TABLE trials",
    "accuracy > 0; DROP TABLE trial_results",
    "accuracy > 0 -- comment",
    "accuracy > 0 /* x */",
    "accuracy > 0 UNION SELECT name FROM sqlite_master",
    "accuracy > (SELECT 1)",
    "accuracy > 0 or 1=1",
    "study == 's' or sqlite_version() > '0'",
    "accuracy > 0`",
    "DELETE FROM trial_results",
    "accuracy > 0 \x00",
]


@pytest.mark.parametrize("where", SMUGGLED)
def test_sql_smuggling_is_refused_and_the_database_unchanged(url, where):
    before = snapshot(url)
    with pytest.raises(FilterError):
        numbers(url, where)
    assert snapshot(url) == before


def test_quotes_stay_inside_string_literals(url):
    before = snapshot(url)
    evil = "lgl'; DROP TABLE trial_results; --"
    assert numbers(url, f'stage3.block == "{evil}"') == []
    assert numbers(url, "state == 'x\\' or 1=1 --'") == []
    assert snapshot(url) == before
    # the literal is a bound parameter: it never appears in the SQL text
    expr = compile_filter(f'stage3.block == "{evil}"', query.trial_fields())
    assert "DROP" not in str(expr.compile())


def test_limits():
    with pytest.raises(FilterError, match="deeper than"):
        parse("(" * 200 + "accuracy > 0" + ")" * 200)
    with pytest.raises(FilterError, match="deeper than"):
        parse("not " * 200 + "accuracy > 0")
    with pytest.raises(FilterError, match="characters long"):
        tokenize("a" * 5000)
    assert len(tokenize("accuracy >= 0.5 and x in [1, 2]")) == 12  # END included
