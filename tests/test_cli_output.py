"""Every listing command renders through one renderer: table, CSV and JSON with the same columns,
CSV cells that are never Python reprs, JSON that parses, and user text never read as markup.

The store is the one written by the previous version (tests/fixtures/store-v0.db), plus a study
whose name and reason look like rich markup.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeexplore import store
from edgeexplore.cli import cli
from edgeexplore.store import db

FIXTURE = Path(__file__).parent / "fixtures" / "store-v0.db"
MARKUP = "[red]x[/red]"


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("out") / "store.db"
    shutil.copy(FIXTURE, path)
    url = f"sqlite:///{path}"
    with db.session_scope(url) as s:
        s.add(store.TrialResult(study=MARKUP, number=0, state=store.FAILED, seed=0,
                                reason="[bold]boom[/bold]", flops=5_612_345, params=980))
    return url


def run(*args: str):
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.stdout


LISTINGS = [
    ("studies",),
    ("trials", "list"),
    ("pareto", "--study", "tiny", "--no-presets"),
    ("presets",),
    ("backends",),
    ("spaces",),
]


def _with_storage(args: tuple[str, ...], storage: str) -> list[str]:
    if args[0] in ("studies", "trials", "pareto"):
        return [*args, "--storage", storage]
    return list(args)


@pytest.mark.parametrize("args", LISTINGS, ids=lambda a: " ".join(a[:2]))
def test_every_listing_has_the_same_columns_in_csv_json_and_table(storage, args):
    argv = _with_storage(args, storage)
    rows = list(csv.reader(io.StringIO(run(*argv, "--format", "csv"))))
    header, body = rows[0], rows[1:]
    assert body, "the listing should have rows"
    data = json.loads(run(*argv, "--format", "json"))
    records = data["front"] if isinstance(data, dict) else data  # pareto's is a document
    assert [list(r) for r in records] == [header] * len(records)
    assert len(records) == len(body)
    for row, record in zip(body, records):
        for value, (key, want) in zip(row, record.items()):
            # never a Python repr: nested values are JSON text, None is an empty cell
            assert value not in ("None", "True", "False", "nan"), (key, value)
            if want is None:
                assert value == "", key
            elif isinstance(want, (dict, list, bool)):
                assert json.loads(value) == want, key
            else:
                assert value == str(want), key
    table = run(*argv)
    assert table.count("┃") >= len(header)  # one rich table holding every column


def test_studies_csv_writes_json_not_reprs(storage):
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(
        run("studies", "--storage", storage, "--format", "csv")))}
    assert json.loads(rows["tiny"]["states"]) == {"complete": 3}
    assert json.loads(rows["tiny"]["objectives"]) == ["accuracy:max", "latency_ms:min"]
    assert rows["tiny"]["states"] == '{"complete": 3}'


def test_names_and_reasons_print_as_written(storage):
    out = run("studies", "--storage", storage)
    assert MARKUP in out
    out = run("trials", "list", "--storage", storage, "--study", MARKUP)
    assert MARKUP in out
    trial_id = json.loads(run("trials", "list", "--storage", storage, "--study", MARKUP,
                              "--format", "json"))[0]["id"]
    out = run("trials", "show", str(trial_id), "--storage", storage)
    assert "[bold]boom[/bold]" in out and MARKUP in out


def test_counts_take_their_unit_from_their_size(storage):
    out = run("trials", "list", "--storage", storage, "--study", MARKUP)
    assert "5.61 M" in out and "980" in out
    out = run("measure", "edgevit_xxs", "--no-latency")
    assert "(557 M)" in out or " M)" in out
    assert " G)" not in out  # 0.56 GFLOPs used to print as "0.557 G"


def test_limit_zero_means_all_everywhere(storage):
    every = json.loads(run("trials", "list", "--storage", storage, "--format", "json"))
    none_cut = json.loads(run("trials", "list", "--storage", storage, "--limit", "0",
                              "--format", "json"))
    assert len(none_cut) == len(every) == 10
    two = json.loads(run("trials", "list", "--storage", storage, "--limit", "2",
                         "--format", "json"))
    assert len(two) == 2
    text = run("trials", "export", "--storage", storage, "--limit", "0", "--format", "json")
    assert len(json.loads(text)) == 10


def test_save_config_says_where_it_wrote(storage, tmp_path):
    path = tmp_path / "a.json"
    res = CliRunner().invoke(cli, ["trials", "show", "1", "--storage", storage,
                                   "--save-config", str(path), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert f"Saved the architecture of trial 1 to {path}." in res.stderr
    assert json.loads(res.stdout)["id"] == 1  # stdout stays one JSON document
    assert path.is_file()


def test_measure_csv_is_one_row_with_the_json_fields():
    rows = list(csv.DictReader(io.StringIO(run("measure", "edgevit_xxs", "--no-latency",
                                               "--format", "csv"))))
    obj = json.loads(run("measure", "edgevit_xxs", "--no-latency", "--format", "json"))
    assert len(rows) == 1 and list(rows[0]) == list(obj)
    assert json.loads(rows[0]["config"]) == obj["config"]
    assert rows[0]["latency"] == "" and obj["latency"] is None


def test_ablation_csv_writes_booleans_as_csv_not_python(storage):
    rows = list(csv.DictReader(io.StringIO(run("ablation-show", "t", "--storage", storage,
                                               "--format", "csv"))))
    assert [r["baseline"] for r in rows] == ["true", "false", "false"]


def test_json_documents_hold_no_nan():
    """An undefined correlation (a fidelity report of constant accuracies) or a missing
    measurement is null in every JSON document, never the NaN no JSON parser but Python's reads."""
    from edgeexplore.tabular import json_text

    text = json_text({"tau": float("nan"), "ci": (float("nan"), 0.5), "n": 3})
    assert "NaN" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {
        "tau": None, "ci": [None, 0.5], "n": 3}


def test_export_counts_records_not_lines(tmp_path):
    """A failure reason may span lines; the export's closing count is of trials."""
    path = tmp_path / "store.db"
    shutil.copy(FIXTURE, path)
    url = f"sqlite:///{path}"
    with db.session_scope(url) as s:
        s.add(store.TrialResult(study="nl", number=0, state=store.FAILED, seed=0,
                                reason="CUDA out of memory.\nTried to allocate 2 GiB"))
    out = tmp_path / "all.csv"
    res = CliRunner().invoke(cli, ["trials", "export", "--storage", url, "-o", str(out)])
    assert res.exit_code == 0, res.output
    n = len(list(csv.DictReader(out.open(newline=""))))
    assert f"Wrote {n} trials" in res.stderr
