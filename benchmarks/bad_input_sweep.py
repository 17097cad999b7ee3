"""Every command of ``edgeexplore`` run with bad input, as a user would: one subprocess per case.

The project rule: every command validates its input, prints one clear sentence on failure (no
traceback unless ``--debug``), exits non-zero, and never changes a store it should not. This
script checks that rule over wrong, missing, huge (100k-character), binary and hostile input
(SQL in filters, path traversal, rich markup, control characters, folders and read-only files
where a file is expected, a foreign SQLite database or a text file as ``--storage``, pickles that
would run code) for every command ``edgeexplore --help`` lists.

Each case runs in a folder of its own holding a copy of a prepared store (two tiny studies,
searched once at start-up; ``--work DIR`` keeps and reuses it) and no ``$EDGEEXPLORE_STORAGE``,
under a 4 GiB address-space limit and a time-out. By default each case is a process forked from
one that imported ``edgeexplore.cli`` once (the console script's ``main``, its own working
folder, environment, stdin/stdout/stderr and session), which saves ~3 s of imports per case;
``--exec`` starts ``python -m edgeexplore`` for every case instead. A case passes when:

* the exit status is non-zero (and not a crash: a signal or a time-out fails too);
* neither stdout nor stderr holds "Traceback";
* stderr, less click's usage lines, is one line "Error: ..." of one sentence, at most
  ``MAX_ERROR_CHARS`` long (a 100k-character argument echoed back is no clear sentence);
* no file in the case's folder or the shared fixtures was created, changed or removed (sha256).

Usage: ``uv run python benchmarks/bad_input_sweep.py [-j 3] [-k SUBSTRING] [--work DIR] [-v]
[--exec] [--list]``. A case that is valid input after all is left out with a comment saying why.
The last line is ``bad-input sweep: N cases, K failures (tracebacks T, exit-0 E, store changed
S)``; K also counts cases whose only fault is the message or a crash/time-out (listed above it).
The exit status is 1 when K > 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import queue
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from tiny import TINY

EXE = [sys.executable, "-m", "edgeexplore"]
TIMEOUT_S = 120
MAX_ERROR_CHARS = 1000
MEMORY_LIMIT = 4 << 30  # address space per case: a YAML bomb expanded must not take the machine

HUGE = "x" * 100_000
CTRL = "a\x1b[31mred\x07\rb\x08\x7f"
MARKUP = "[red]x[/red]"
SECRET = "s3cr3t-pw"


@dataclass
class Case:
    name: str
    argv: list[str]
    #: run in the case folder before the command (a read-only file, an extra file); gets the folder
    setup: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    stdin: str = ""
    #: text that must not appear in the output (a password in a URL)
    hidden: str | None = None


@dataclass
class Result:
    case: Case
    rc: int | None
    out: str
    err: str
    seconds: float
    faults: list[str]
    changed: list[str] = field(default_factory=list)


# -- fixtures -----------------------------------------------------------------------------------


class _Evil:
    """Unpickling this runs ``touch pwned`` in the working folder (seen as a changed store)."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def make_fixtures(fx: Path) -> None:
    """Bad files, shared read-only by every case (any change to them fails the case)."""
    fx.mkdir(parents=True, exist_ok=True)
    import random

    rng = random.Random(13)
    (fx / "text.txt").write_text("hello, this is not a database nor a config\n")
    (fx / "binary.bin").write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    (fx / "empty.bin").write_bytes(b"")
    (fx / "badutf8.yaml").write_bytes(b"name: \xff\xfe\xfa\nspace: edgevit-tiny\n")
    (fx / "folder").mkdir(exist_ok=True)
    (fx / "folder" / "inside.txt").write_text("x\n")
    (fx / "malformed.yaml").write_text("name: [unclosed\nspace: {a: 1\n")
    (fx / "list.yaml").write_text("- a\n- b\n")
    (fx / "scalar.yaml").write_text("just a string\n")
    (fx / "dup.yaml").write_text((ROOT / "search_spaces" / "edgevit-tiny.yaml").read_text()
                                 .replace("resolution: 64\n", "resolution: 32\nresolution: 64\n"))
    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i, name in enumerate("bcdefgh"):
        prev = "abcdefgh"[i]
        levels.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    (fx / "bomb.yaml").write_text("\n".join(levels) + "\n")
    (fx / "deep.yaml").write_text("a: " + "[" * 20_000 + "]" * 20_000 + "\n")
    (fx / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (fx / "bad.json").write_text('{"stages": [1, 2,')
    (fx / "array.json").write_text("[1, 2, 3]")
    (fx / "stages_text.json").write_text('{"stages": "four"}')
    (fx / "huge_depth.json").write_text(json.dumps({"stages": [
        {"depth": 10 ** 9, "width": 16, "heads": 1}] * 4, "resolution": 32}))
    (fx / "nan.json").write_text('{"stages": [{"depth": 1, "width": NaN, "heads": 1}]}')
    con = sqlite3.connect(fx / "foreign.db")
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.execute("INSERT INTO notes (body) VALUES ('someone else''s data')")
    con.commit()
    con.close()
    import torch

    torch.save({"model": _Evil()}, fx / "evil.pth")
    (fx / "evil.pkl").write_bytes(pickle.dumps({"model": _Evil()}, protocol=2))
    torch.save({"w": torch.zeros(3)}, fx / "not_edgevit.pth")
    (fx / "text.pth").write_text("hello, not a checkpoint\n")
    (fx / "tiny.yaml").write_text(TINY)
    (fx / "recipe_nospace.yaml").write_text(TINY.replace("space: edgevit-tiny", "space: nosuch"))
    (fx / "recipe_binspace.yaml").write_text(
        TINY.replace("space: edgevit-tiny", f"space: {fx / 'binary.bin'}"))
    (fx / "recipe_dirspace.yaml").write_text(
        TINY.replace("space: edgevit-tiny", f"space: {fx / 'folder'}"))
    (fx / "recipe_objsql.yaml").write_text(TINY.replace(
        "objectives: [accuracy, latency_ms]",
        'objectives: [accuracy, "latency_ms:min;DROP TABLE trials"]'))
    (fx / "recipe_unknown.yaml").write_text(TINY + "colour: red\n")
    (fx / "recipe_types.yaml").write_text(TINY.replace("epochs: 1,", "epochs: many,"))
    (fx / "recipe_negative.yaml").write_text(TINY.replace("batch_size: 10", "batch_size: -10"))
    (fx / "recipe_nan.yaml").write_text(TINY.replace("lr: 0.003", "lr: .nan"))
    (fx / "recipe_ctrlname.yaml").write_text(TINY.replace("name: tiny", 'name: "a\\x1b[31mb"'))
    (fx / "recipe_longname.yaml").write_text(TINY.replace("name: tiny", f"name: {'n' * 10_000}"))
    (fx / "recipe_backend.yaml").write_text(TINY.replace("name: torch-cpu", "name: nosuch"))
    (fx / "recipe_dataspec.yaml").write_text(TINY.replace("spec: synthetic", "spec: nosuch"))
    (fx / "space_depth.yaml").write_text("resolution: 32\nhead_dim: 8\nstages:\n"
                                         + "  - {depth: 100000, heads: 1}\n" * 4)
    (fx / "space_empty_choices.yaml").write_text("resolution: 32\nhead_dim: []\nstages:\n"
                                                 + "  - {depth: 1, heads: 1}\n" * 4)
    (fx / "space_negative.yaml").write_text("resolution: -32\nhead_dim: 8\nstages:\n"
                                            + "  - {depth: 1, heads: 1}\n" * 4)
    (fx / "variants_empty.yaml").write_text("variants: []\n")
    (fx / "variants_bad.yaml").write_text("variants:\n  - name: a\n    changes: {colour: red}\n")
    (fx / "variants_types.yaml").write_text("variants: 5\n")


def prepare_store(path: Path) -> None:
    """Two tiny studies (tiny: 2 trials, other: 1 trial) searched into ``path``."""
    folder = path.parent
    for name, budget in (("tiny", "2"), ("other", "1")):
        run = subprocess.run([*EXE, "search", str(folder / "tiny.yaml"), "--name", name,
                              "--budget", budget, "--storage", str(path), "--quiet"],
                             check=False, cwd=folder, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"preparing the store failed:\n{run.stdout}\n{run.stderr}")


# -- cases --------------------------------------------------------------------------------------


def _immutable(path: Path) -> None:
    """``path`` unwritable even for root (chattr +i), or by its mode for anyone else."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    else:
        path.chmod(0o555 if path.is_dir() else 0o444)


def _release(folder: Path) -> None:
    if os.geteuid() == 0:
        for p in [folder, *folder.rglob("*")]:
            subprocess.run(["chattr", "-i", str(p)], check=False, capture_output=True)
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


def ro_store(case: Path) -> None:
    _immutable(case / "store.db")


def ro_folder(case: Path) -> None:
    (case / "ro").mkdir()
    _immutable(case / "ro")


def ro_output(case: Path) -> None:
    (case / "out.txt").write_text("keep me\n")
    _immutable(case / "out.txt")


def existing_file(case: Path) -> None:
    (case / "afile").write_text("a file, not a folder\n")


def empty_store(case: Path) -> None:
    (case / "empty.db").write_bytes(b"")


def foreign_copy(case: Path) -> None:
    shutil.copy(Path(os.environ["SWEEP_FX"]) / "foreign.db", case / "foreign.db")


STORE = "store.db"
STORAGE = ["--storage", STORE]


def store_variants(fx: Path) -> list[tuple[str, list[str], Callable | None, str | None]]:
    """Bad values for ``--storage``: (label, args, setup, hidden text)."""
    return [
        ("missing file", ["--storage", "nosuch.db"], None, None),
        ("missing folder", ["--storage", "nosuch/dir/s.db"], None, None),
        ("folder", ["--storage", str(fx / "folder")], None, None),
        ("text file", ["--storage", str(fx / "text.txt")], None, None),
        ("binary file", ["--storage", str(fx / "binary.bin")], None, None),
        ("empty file", ["--storage", "empty.db"], empty_store, None),
        ("foreign sqlite", ["--storage", "foreign.db"], foreign_copy, None),
        ("traversal to text", ["--storage", f"../../{fx.name}/../{fx.name}/text.txt"], None, None),
        ("huge path", ["--storage", HUGE], None, None),
        ("unknown dialect", ["--storage", "nosuchdb://u:p@h/x"], None, None),
        ("bad url", ["--storage", "sqlite:////"], None, None),
        ("password url", ["--storage", f"mysql://me:{SECRET}@127.0.0.1:1/db"], None, SECRET),
        ("control chars", ["--storage", CTRL], None, None),
    ]


def cases(fx: Path) -> list[Case]:
    c: list[Case] = []

    def add(name: str, *argv: str, setup=None, env=None, stdin="", hidden=None) -> None:
        c.append(Case(name, list(argv), setup, dict(env or {}), stdin, hidden))

    f = {k: str(fx / k) for k in (
        "text.txt", "binary.bin", "empty.bin", "badutf8.yaml", "folder", "malformed.yaml",
        "list.yaml", "scalar.yaml", "dup.yaml", "bomb.yaml", "deep.yaml", "deep.json",
        "bad.json", "array.json", "stages_text.json", "huge_depth.json", "nan.json",
        "foreign.db", "evil.pth", "evil.pkl", "not_edgevit.pth", "text.pth", "tiny.yaml",
        "recipe_nospace.yaml", "recipe_binspace.yaml", "recipe_dirspace.yaml",
        "recipe_objsql.yaml", "recipe_unknown.yaml", "recipe_types.yaml",
        "recipe_negative.yaml", "recipe_nan.yaml", "recipe_ctrlname.yaml",
        "recipe_longname.yaml", "recipe_backend.yaml", "recipe_dataspec.yaml",
        "space_depth.yaml", "space_empty_choices.yaml", "space_negative.yaml",
        "variants_empty.yaml", "variants_bad.yaml", "variants_types.yaml")}

    # -- the group itself
    add("unknown command", "nosuch")
    add("unknown global option", "--nosuch", "studies")
    add("env storage is a text file", "studies", env={"EDGEEXPLORE_STORAGE": f["text.txt"]})
    add("env storage is a folder", "trials", "list", env={"EDGEEXPLORE_STORAGE": f["folder"]})

    # -- --storage over every command that opens a store: none may create or change a file
    store_commands = {
        "trials list": ["trials", "list"],
        "trials export": ["trials", "export"],
        "trials show": ["trials", "show", "1"],
        "trials curves": ["trials", "curves", "1"],
        "trials rerun": ["trials", "rerun", "1", "--quiet"],
        "studies": ["studies"],
        "studies delete": ["studies", "delete", "tiny", "--yes"],
        "studies rename": ["studies", "rename", "tiny", "renamed", "--yes"],
        "pareto": ["pareto", "--no-presets"],
        "workers": ["workers", "tiny"],
        "ablation-show": ["ablation-show", "x"],
        "store version": ["store", "version"],
        "store upgrade": ["store", "upgrade"],
        "predictor show": ["predictor", "show"],
        "predictor check": ["predictor", "check", "edgevit_xxs"],
        "fidelity": ["fidelity", "tiny", "--top", "2"],
        "measure": ["measure", "edgevit_xxs"],
        "search": ["search", f["tiny.yaml"], "--budget", "1", "--quiet"],
        "copy-study --from": ["copy-study", "tiny", "--to", "copy.db"],
    }
    # Left out as valid input: `measure` and `search` write (the latency cache, the study), so a
    # missing or empty file, or a file name with control characters (legal on Linux), is a new
    # store for them, as for `copy-study --to` below.
    writers = {"measure", "search"}
    new_store = {"missing file", "empty file", "control chars"}
    for label, args, setup, hidden in store_variants(fx):
        for cname, cargs in store_commands.items():
            if cname in writers and label in new_store:
                continue
            if cname == "copy-study --from":
                argv = [*cargs, "--from", args[1]]
            else:
                argv = [*cargs, *args]
            add(f"{cname}: --storage {label}", *argv, setup=setup, hidden=hidden)
    for label, args, setup, _ in store_variants(fx)[:8]:
        if label in new_store:
            continue  # a new store to copy into: valid
        add(f"copy-study --to {label}", "copy-study", "tiny", "--from", STORE, "--to", args[1],
            setup=setup)
    # a writer's bad input must not create the store it names either
    add("search bad budget, new store", "search", f["tiny.yaml"], "--budget", "0",
        "--storage", "new.db", "--quiet")
    add("measure bad batch, new store", "measure", "edgevit_xxs", "--batch", "0",
        "--storage", "new.db")
    add("ablate bad target, new store", "ablate", "local-agg", "--quick", "--flops-target",
        "abc", "--storage", "new.db")
    add("ablate bad base, new store", "ablate", "local-agg", "--quick", "--base", "nosuch",
        "--storage", "new.db")
    add("copy-study missing study, new store", "copy-study", "nosuch", "--from", STORE,
        "--to", "new.db")
    add("predictor fit bad space, new store", "predictor", "fit", "--space", "nosuch",
        "--storage", "new.db")
    add("predictor fit unusable backend, new store", "predictor", "fit", "--backend", "command",
        "--storage", "new.db")
    add("predictor fit no samples, new store", "predictor", "fit", "--samples", "0",
        "--storage", "new.db")
    add("predictor fit on lut, new store", "predictor", "fit", "--backend", "lut",
        "--storage", "new.db")

    # -- read-only store / folder / output for commands that write
    for cname, cargs in [
        ("search", ["search", f["tiny.yaml"], "--name", "tiny", "--budget", "1", "--quiet"]),
        ("measure", ["measure", "edgevit_xxs", "--resolution", "32"]),
        ("studies delete", ["studies", "delete", "tiny", "--yes"]),
        ("studies rename", ["studies", "rename", "tiny", "renamed", "--yes"]),
        # (`store upgrade` on a read-only store at the current revision has nothing to write:
        # valid, left out)
        ("predictor fit", ["predictor", "fit", "--samples", "2", "--candidates", "2"]),
        ("trials rerun", ["trials", "rerun", "1", "--quiet"]),
        ("ablate", ["ablate", "local-agg", "--quick"]),
        ("fidelity", ["fidelity", "tiny", "--top", "2"]),
    ]:
        add(f"{cname}: read-only store", *cargs, *STORAGE, setup=ro_store)
    add("copy-study --to read-only store", "copy-study", "tiny", "--from", f["foreign.db"],
        "--to", STORE, setup=ro_store)
    add("search into a read-only folder", "search", f["tiny.yaml"], "--budget", "1",
        "--storage", "ro/s.db", "--quiet", setup=ro_folder)
    add("trials export -o read-only file", "trials", "export", *STORAGE, "-o", "out.txt",
        setup=ro_output)
    add("trials show --save-config read-only file", "trials", "show", "1", *STORAGE,
        "--save-config", "out.txt", setup=ro_output)
    add("export -o read-only file", "export", "edgevit_xxs", "-o", "out.txt", "--no-time",
        setup=ro_output)
    add("convert -o into read-only folder", "convert", f["not_edgevit.pth"], "--head-dim",
        "16", "-o", "ro/x.pt", setup=ro_folder)
    add("train -o read-only folder", "train", "edgevit_xxs", "--data", "synthetic",
        "-o", "ro", "--epochs", "1", setup=ro_folder)

    # -- filters, sorting, limits (trials list / export / pareto)
    bad_where = {
        "SQL statement": "accuracy > 0; DROP TABLE trials",
        "SQL comment": "accuracy > 0 -- and 1",
        "SQL quote": "stage1.block == 'x' OR '1'='1'",
        "SQL or-true": "1=1 OR 1=1",
        "union select": "accuracy > 0 UNION SELECT * FROM studies",
        "unknown field": "colour == 'red'",
        "non-ascii field": "é > 1",
        # (an empty or blank --where, like an empty --sort or --objectives, is "none given":
        # valid, so that scripts may pass "$FILTER"; left out)
        "unbalanced": "(accuracy > 0",
        "dangling op": "accuracy >",
        "deep nesting": "(" * 200 + "accuracy > 0" + ")" * 200,
        "huge": " or ".join(["accuracy > 0"] * 8000),
        "huge literal": "accuracy > " + "9" * 100_000,
        "control chars": f"accuracy > 0 and {CTRL}",
        "markup": f"{MARKUP} == 1",
        "python": "__import__('os').system('touch pwned')",
        "type mismatch": "accuracy > 'abc'",
        "in non-list": "state in 5",
    }
    for label, expr in bad_where.items():
        add(f"trials list --where {label}", "trials", "list", *STORAGE, "--where", expr)
    for label in ("SQL statement", "unknown field", "huge", "deep nesting", "python"):
        add(f"trials export --where {label}", "trials", "export", *STORAGE, "--where",
            bad_where[label])
        add(f"pareto --where {label}", "pareto", "--no-presets", *STORAGE, "--where",
            bad_where[label])
    for label, sort in {"unknown": "colour", "SQL": "accuracy; DROP TABLE trials",
                        "only minus": "-", "huge": HUGE, "control": CTRL,
                        "markup": MARKUP}.items():
        add(f"trials list --sort {label}", "trials", "list", *STORAGE, "--sort", sort)
    add("trials export --sort SQL", "trials", "export", *STORAGE, "--sort", "1; DROP TABLE x")
    for value in ("-1", "abc", "1e99", "99999999999999999999999"):
        add(f"trials list --limit {value}", "trials", "list", *STORAGE, "--limit", value)
    add("pareto --limit -1", "pareto", "--no-presets", *STORAGE, "--limit", "-1")
    for label, study in {"missing": "nosuch", "markup": MARKUP, "huge": HUGE, "control": CTRL,
                         "empty": "", "SQL": "tiny' OR '1'='1"}.items():
        add(f"trials list --study {label}", "trials", "list", *STORAGE, "--study", study)
        add(f"pareto --study {label}", "pareto", "--no-presets", *STORAGE, "--study", study)
    add("trials export --study missing", "trials", "export", *STORAGE, "--study", "nosuch")
    for cmd in (["trials", "list"], ["trials", "export"], ["studies"], ["pareto"], ["presets"],
                ["spaces"], ["backends"], ["workers", "tiny"], ["predictor", "show"]):
        add(f"{' '.join(cmd)} --format xml", *cmd, "--format", "xml",
            *(STORAGE if cmd[0] not in ("presets", "spaces", "backends") else []))
    add("trials export -o missing folder", "trials", "export", *STORAGE, "-o", "nosuch/x.csv")
    add("trials export -o a folder", "trials", "export", *STORAGE, "-o", f["folder"])
    add("trials export -o the store itself", "trials", "export", *STORAGE, "-o", STORE)

    # -- trials show / curves / rerun ids
    for label, tid in {"text": "abc", "negative": "-1", "zero": "0", "missing": "99999",
                       "past 64 bits": str(2 ** 70), "huge": "9" * 100_000, "float": "1.5",
                       "control": CTRL, "empty": ""}.items():
        add(f"trials show id {label}", "trials", "show", tid, *STORAGE)
        add(f"trials rerun id {label}", "trials", "rerun", tid, *STORAGE, "--quiet")
    for label, tid in {"text": "abc", "missing": "99999", "huge": "9" * 100_000}.items():
        add(f"trials curves id {label}", "trials", "curves", tid, *STORAGE)
    add("trials curves no id", "trials", "curves", *STORAGE)
    add("trials show --save-config missing folder", "trials", "show", "1", *STORAGE,
        "--save-config", "nosuch/x.json")
    add("trials show --save-config a folder", "trials", "show", "1", *STORAGE,
        "--save-config", f["folder"])
    add("trials show --save-config the store", "trials", "show", "1", *STORAGE,
        "--save-config", STORE)
    add("trials curves --plot bad extension", "trials", "curves", "1", *STORAGE,
        "--plot", "x.txt")
    add("trials curves --plot missing folder", "trials", "curves", "1", *STORAGE,
        "--plot", "nosuch/x.png")
    add("trials curves --plot a folder", "trials", "curves", "1", *STORAGE,
        "--plot", f["folder"])
    add("trials curves --plot the store", "trials", "curves", "1", *STORAGE, "--plot", STORE)
    add("trials rerun --seed -1", "trials", "rerun", "1", *STORAGE, "--seed", "-1")
    add("trials rerun --seed huge", "trials", "rerun", "1", *STORAGE, "--seed", "9" * 100)

    # -- studies delete / rename
    add("studies delete missing", "studies", "delete", "nosuch", "--yes", *STORAGE)
    add("studies delete unconfirmed (stdin closed)", "studies", "delete", "tiny", *STORAGE)
    add("studies delete answered no", "studies", "delete", "tiny", *STORAGE, stdin="n\n")
    add("studies delete huge", "studies", "delete", HUGE, "--yes", *STORAGE)
    add("studies delete markup", "studies", "delete", MARKUP, "--yes", *STORAGE)
    add("studies rename missing", "studies", "rename", "nosuch", "x", "--yes", *STORAGE)
    add("studies rename onto existing", "studies", "rename", "tiny", "other", "--yes", *STORAGE)
    add("studies rename to itself", "studies", "rename", "tiny", "tiny", "--yes", *STORAGE)
    add("studies rename to empty", "studies", "rename", "tiny", "", "--yes", *STORAGE)
    add("studies rename to blank", "studies", "rename", "tiny", "   ", "--yes", *STORAGE)
    add("studies rename to huge", "studies", "rename", "tiny", HUGE, "--yes", *STORAGE)
    add("studies rename to control", "studies", "rename", "tiny", CTRL, "--yes", *STORAGE)
    add("studies rename unconfirmed", "studies", "rename", "tiny", "x", *STORAGE)

    # -- pareto
    for label, obj in {"SQL": "latency_ms:min;DROP TABLE trials", "one": "accuracy:max",
                       "four": "accuracy:max,latency_ms:min,params:min,flops:min",
                       "unknown": "nosuch:max", "bad direction": "accuracy:up",
                       "repeated": "accuracy:max,accuracy:min",
                       "huge": HUGE, "control": CTRL}.items():
        add(f"pareto --objectives {label}", "pareto", "--no-presets", *STORAGE,
            "--objectives", obj)
    for label, noise in {"text": "abc", "negative": "accuracy=-1", "nan": "accuracy=nan",
                         "unknown": "colour=1", "huge": HUGE, "inf": "accuracy=inf"}.items():
        add(f"pareto --noise {label}", "pareto", "--no-presets", *STORAGE, "--noise", noise)
    add("pareto --plot bad extension", "pareto", "--no-presets", *STORAGE, "--plot", "x.txt")
    add("pareto --plot missing folder", "pareto", "--no-presets", *STORAGE,
        "--plot", "nosuch/x.png")
    add("pareto --plot a folder", "pareto", "--no-presets", *STORAGE, "--plot", f["folder"])
    add("pareto --plot the store", "pareto", "--no-presets", *STORAGE, "--plot", STORE)
    add("pareto --backend missing (presets measured)", "pareto", *STORAGE,
        "--backend", "nosuch")
    add("pareto --backend cuda", "pareto", *STORAGE, "--backend", "cuda")
    add("pareto --train-presets --no-presets", "pareto", *STORAGE, "--train-presets",
        "--no-presets", "--backend", "nosuch")

    # -- measure
    for label, arch in {"unknown preset": "nosuch", "text": f["text.txt"],
                        "binary": f["binary.bin"], "empty": f["empty.bin"],
                        "folder": f["folder"], "bad json": f["bad.json"],
                        "json array": f["array.json"], "deep json": f["deep.json"],
                        "stages text": f["stages_text.json"], "huge depth": f["huge_depth.json"],
                        "nan": f["nan.json"], "huge name": HUGE, "markup": MARKUP,
                        "control": CTRL, "traversal": f"../../{fx.name}/../{fx.name}/nosuch.json",
                        "yaml": f["tiny.yaml"]}.items():
        add(f"measure arch {label}", "measure", arch, *STORAGE)
    for opt, values in {"--resolution": ["0", "-5", "abc", "100000", "32x", "9" * 100_000],
                        # (--classes 0 is a headless backbone, timm's num_classes=0: valid)
                        "--classes": ["-1", "1000000000"],
                        "--threads": ["0", "-1", "99999"],
                        "--batch": ["0", "-1", "100000000"],
                        "--backend": ["nosuch", "cuda", HUGE, MARKUP],
                        "--set": ["nokey", "budget_s=-1", "budget_s=abc", "colour=red",
                                  "budget_s=1e400", f"clock={HUGE}"]}.items():
        for value in values:
            add(f"measure {opt} {value[:20]}", "measure", "edgevit_xxs", *STORAGE, opt, value)
    add("measure --set on command backend without command", "measure", "edgevit_xxs",
        *STORAGE, "--backend", "command")

    # -- backends
    add("backends --backend missing", "backends", "--backend", "nosuch")
    add("backends --set without =", "backends", "--backend", "torch-cpu", "--set", "budget_s")
    add("backends --set unknown", "backends", "--backend", "torch-cpu", "--set", "colour=red")
    add("backends --set without --backend", "backends", "--set", "budget_s=1")
    add("backends command template missing", "backends", "--backend", "command", "--set",
        "command=/nonexistent/bench {model}")

    # -- spaces
    for label, space in {"missing": "nosuch", "binary": f["binary.bin"], "empty": f["empty.bin"],
                         "bad utf8": f["badutf8.yaml"], "folder": f["folder"],
                         "malformed": f["malformed.yaml"], "list": f["list.yaml"],
                         "scalar": f["scalar.yaml"], "duplicate key": f["dup.yaml"],
                         "bomb": f["bomb.yaml"], "deep": f["deep.yaml"], "huge": HUGE,
                         "markup": MARKUP, "control": CTRL, "depth": f["space_depth.yaml"],
                         "empty choices": f["space_empty_choices.yaml"],
                         "negative": f["space_negative.yaml"],
                         "traversal": f"../../../../../../{fx}/nosuch.yaml"}.items():
        add(f"spaces {label}", "spaces", space)

    # -- search (none may store a trial: store.db hashed)
    search = ["search", f["tiny.yaml"], *STORAGE, "--quiet"]
    for label, recipe in {"missing": "nosuch.yaml", "binary": f["binary.bin"],
                          "empty": f["empty.bin"], "bad utf8": f["badutf8.yaml"],
                          "folder": f["folder"], "malformed": f["malformed.yaml"],
                          "list": f["list.yaml"], "bomb": f["bomb.yaml"], "deep": f["deep.yaml"],
                          "huge": HUGE, "control": CTRL, "no space": f["recipe_nospace.yaml"],
                          "binary space": f["recipe_binspace.yaml"],
                          "folder space": f["recipe_dirspace.yaml"],
                          "SQL objective": f["recipe_objsql.yaml"],
                          "unknown key": f["recipe_unknown.yaml"],
                          "text epochs": f["recipe_types.yaml"],
                          "negative batch": f["recipe_negative.yaml"],
                          "nan lr": f["recipe_nan.yaml"],
                          "control name": f["recipe_ctrlname.yaml"],
                          "10k name": f["recipe_longname.yaml"],
                          "unknown backend": f["recipe_backend.yaml"],
                          "unknown data": f["recipe_dataspec.yaml"]}.items():
        add(f"search recipe {label}", "search", recipe, "--budget", "1", *STORAGE, "--quiet")
    for opt, values in {"--budget": ["0", "-1", "abc", "1e99", "45x", "9" * 100_000, "0s"],
                        "--max-trials": ["0", "-1", "abc"],
                        "--name": ["", "   ", HUGE, CTRL, "n" * 10_000],
                        "--workers": ["0", "-1", "100000"],
                        "--devices": ["cuda:99", "tpu", "", "cpu,,cpu"],
                        "--retries": ["-1", "abc"],
                        "--seed": ["-1", "abc", "9" * 100],
                        "--backend": ["nosuch", "cuda", HUGE],
                        "--data": ["nosuch", "folder:/nonexistent", f"folder:{fx / 'text.txt'}",
                                   "synthetic,subset=abc", "synthetic,subset=-1", HUGE,
                                   "cifar10:/nonexistent", "synthetic,colour=red"]}.items():
        for value in values:
            budget = [] if opt == "--budget" else ["--budget", "1"]
            add(f"search {opt} {value[:20]!r}", *search, *budget, opt, value)
    add("search --workers with --devices", *search, "--budget", "1", "--workers", "2",
        "--devices", "cpu,cpu")
    add("search existing study, other space", "search", f["recipe_nospace.yaml"], "--name",
        "tiny", "--budget", "1", *STORAGE, "--quiet")

    # -- ablate (nothing may train: each must fail in validation)
    ablate = ["ablate", "local-agg", "--quick", *STORAGE]
    for label, comp in {"unknown": "nosuch", "binary": f["binary.bin"],
                        "empty": f["empty.bin"], "malformed": f["malformed.yaml"],
                        "no variants": f["variants_empty.yaml"],
                        "bad change": f["variants_bad.yaml"], "types": f["variants_types.yaml"],
                        "folder": f["folder"], "huge": HUGE, "bomb": f["bomb.yaml"],
                        "deep": f["deep.yaml"]}.items():
        add(f"ablate component {label}", "ablate", comp, "--quick", *STORAGE)
    for opt, values in {"--tolerance": ["abc", "-5%", "0", "500%", "nan"],
                        "--flops-target": ["abc", "-1G", "0", "1e400", "5Q"],
                        "--resolution": ["0", "abcxdef", "100000", "-64"],
                        "--seeds": ["0", "abc"],
                        "--data": ["nosuch", "folder:/nonexistent", HUGE],
                        "--epochs": ["0"], "--batch-size": ["0"],
                        "--lr": ["-1", "nan", "inf", "0"],
                        "--subset": ["0"], "--val-subset": ["-3"],
                        "--base": ["nosuch", f["binary.bin"], f["nan.json"], f["huge_depth.json"]],
                        "--backend": ["nosuch", HUGE],
                        "--name": ["", HUGE, CTRL],
                        "-o": ["nosuch/x.csv", "x.nosuchformat", f["folder"]],
                        "--format": ["xml"]}.items():
        for value in values:
            add(f"ablate {opt} {value[:20]!r}", *ablate, opt, value)
    add("ablation-show missing", "ablation-show", "nosuch", *STORAGE)
    add("ablation-show huge", "ablation-show", HUGE, *STORAGE)
    add("ablation-show markup", "ablation-show", MARKUP, *STORAGE)

    # -- convert
    for label, ckpt in {"missing": "nosuch.pth", "folder": f["folder"], "text": f["text.pth"],
                        "binary": f["binary.bin"], "empty": f["empty.bin"],
                        "evil pickle (zip)": f["evil.pth"], "evil pickle (legacy)": f["evil.pkl"],
                        "not EdgeViT": f["not_edgevit.pth"], "huge": HUGE,
                        "store as checkpoint": f["foreign.db"]}.items():
        add(f"convert {label}", "convert", ckpt, "--head-dim", "16", "-o", "out.pt")
    for opt, values in {"--head-dim": ["0", "-1", "abc"], "--depth": ["a,b", "1,2", "0,0,0,0",
                                                                       "-1,1,1,1"],
                        "--embed-dim": ["1,2", "x"], "--mlp-ratio": ["nan", "-1", "1,2"],
                        "--sr-ratios": ["0,0,0,0", "a"], "--num-classes": ["0", "-1"],
                        "--img-size": ["0", "abc", "-224"], "--preset": ["nosuch", "edgenext_xxs"],
                        "-o": ["nosuch/x.pt", f["folder"]]}.items():
        for value in values:
            extra = [] if opt in ("-o",) else ["-o", "out.pt"]
            head = [] if opt in ("--head-dim", "--preset") else ["--head-dim", "16"]
            add(f"convert {opt} {value[:20]!r}", "convert", f["not_edgevit.pth"], *head, *extra,
                opt, value)

    # -- evaluate
    evaluate = ["evaluate", "--data", "synthetic"]
    for label, ckpt in {"missing": "nosuch.pt", "folder": f["folder"], "text": f["text.pth"],
                        "binary": f["binary.bin"], "evil": f["evil.pth"], "evil legacy":
                        f["evil.pkl"], "not ours": f["not_edgevit.pth"], "huge": HUGE}.items():
        add(f"evaluate {label}", *evaluate, ckpt)
    for opt, values in {"--batch-size": ["0"], "--crop-pct": ["0", "-1", "nan", "5"],
                        "--workers": ["-1"], "--device": ["tpu", "cuda:99"],
                        "--resolution": ["0", "abc"], "--arch": ["nosuch", f["binary.bin"]],
                        "--data": ["nosuch", "folder:/nonexistent"]}.items():
        for value in values:
            add(f"evaluate {opt} {value[:20]!r}", *evaluate, f["not_edgevit.pth"], opt, value)
    add("evaluate without --data", "evaluate", f["not_edgevit.pth"])

    # -- export
    export = ["export", "edgevit_xxs", "-o", "x.onnx", "--no-time"]
    for label, arch in {"unknown": "nosuch", "text": f["text.pth"], "binary": f["binary.bin"],
                        "evil": f["evil.pth"], "folder": f["folder"], "bad json": f["bad.json"],
                        "huge": HUGE, "nan": f["nan.json"]}.items():
        add(f"export {label}", "export", arch, "-o", "x.onnx", "--no-time")
    for opt, values in {"--format": ["nosuch"], "--opset": ["3", "1000", "abc"],
                        "--batch": ["0", "100000000"], "--resolution": ["0", "100000", "abc"],
                        "--threads": ["0", "99999"], "--arch": ["nosuch", f["binary.bin"]],
                        # (-o x.nosuchext is valid: --format, not the name, sets the format)
                        "-o": ["nosuch/x.onnx", f["folder"]]}.items():
        for value in values:
            add(f"export {opt} {value[:20]!r}", *export, opt, value)
    add("export without -o", "export", "edgevit_xxs", "--no-time")

    # -- fidelity (nothing may train)
    fid = ["fidelity", "tiny", *STORAGE]
    for opt, values in {"--top": ["1", "0", "abc"], "--epochs-factor": ["0", "-1", "nan", "inf"],
                        "--recipe": ["nosuch", f["binary.bin"], f["malformed.yaml"]],
                        "--data": ["nosuch", "folder:/nonexistent"],
                        "--plot": ["x.txt", "nosuch/x.png"], "--device": ["tpu"],
                        "-o": [f["text.txt"]], "--format": ["xml"]}.items():
        for value in values:
            add(f"fidelity {opt} {value[:20]!r}", *fid, opt, value)
    add("fidelity missing study", "fidelity", "nosuch", *STORAGE)
    add("fidelity huge study", "fidelity", HUGE, *STORAGE)
    add("fidelity full recipe without --data", *fid, "--recipe", "edgevit", "--top", "2")

    # -- train (nothing may train)
    train = ["train", "edgevit_xxs", "--data", "synthetic", "-o", "run"]
    for label, arch in {"unknown": "nosuch", "binary": f["binary.bin"], "nan": f["nan.json"],
                        "missing study": "trial:nosuch/1", "missing trial": "trial:tiny/999",
                        "bad trial": "trial:tiny/abc", "bad trial ref": "trial:",
                        "huge": HUGE}.items():
        add(f"train arch {label}", "train", arch, "--data", "synthetic", "-o", "run", *STORAGE)
    for opt, values in {"--recipe": ["nosuch", f["binary.bin"], f["malformed.yaml"],
                                     f["folder"]],
                        "--epochs": ["0"], "--batch-size": ["0", "100000000"],
                        "--lr": ["0", "-1"], "--warmup-epochs": ["500"],
                        "--resolution": ["0", "abc", "100000"], "--workers": ["-1"],
                        "--stop-after": ["0"], "--device": ["tpu", "cuda:99"],
                        "--seed": ["-1", "9" * 30],
                        "--data": ["nosuch", "folder:/nonexistent", HUGE]}.items():
        for value in values:
            add(f"train {opt} {value[:20]!r}", *train, opt, value)
    add("train -o is a file", "train", "edgevit_xxs", "--data", "synthetic", "-o", "afile",
        setup=existing_file)
    add("train --resume with nothing to resume", *train, "--resume")
    add("train without --data", "train", "edgevit_xxs", "-o", "run")

    # -- workers / copy-study / store / predictor
    add("workers missing study", "workers", "nosuch", *STORAGE)
    add("workers huge study", "workers", HUGE, *STORAGE)
    add("copy-study missing study", "copy-study", "nosuch", "--from", STORE, "--to", "c.db")
    add("copy-study to itself", "copy-study", "tiny", "--from", STORE, "--to", STORE)
    add("copy-study onto an existing study", "copy-study", "tiny", "--from", STORE, "--to",
        "store2.db", setup=lambda d: shutil.copy(d / STORE, d / "store2.db"))
    add("copy-study huge name", "copy-study", HUGE, "--from", STORE, "--to", "c.db")
    add("store upgrade on a foreign db", "store", "upgrade", "--storage", "foreign.db",
        setup=foreign_copy)
    for opt, values in {"--samples": ["0", "-1", "100000"], "--candidates": ["0", "-1"],
                        "--seed": ["-1"], "--features": ["nosuch", ""],
                        "--space": ["nosuch", f["binary.bin"], f["bomb.yaml"]],
                        "--backend": ["nosuch"], "--threads": ["99999"], "--batch": ["0"],
                        "--set": ["nokey", "colour=red"]}.items():
        for value in values:
            add(f"predictor fit {opt} {value[:20]!r}", "predictor", "fit", *STORAGE, opt, value)
    add("predictor check without a predictor", "predictor", "check", "edgevit_xxs", *STORAGE)
    for opt, value in {"--backend": "nosuch", "--threads": "99999", "--batch": "0"}.items():
        add(f"predictor check {opt} {value}", "predictor", "check", "edgevit_xxs", *STORAGE,
            opt, value)
    add("predictor check unknown arch", "predictor", "check", "nosuch", *STORAGE)
    return c


# -- running ------------------------------------------------------------------------------------


def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders`` (a folder's own entry marks an empty one). SQLite's
    side files of a reader are left out: a ``-shm`` index and an empty ``-wal`` log hold no
    data (a ``-wal`` with frames in it is a write, and counts)."""
    seen: dict[str, str] = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            if p.name.endswith("-shm") or (p.name.endswith("-wal") and p.stat().st_size == 0):
                continue
            if p.is_file():
                seen[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                seen[str(p)] = "<dir>"
    return seen


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    os.setsid()


def one_sentence(err: str) -> str | None:
    """Why stderr is not one clear error sentence, or None."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("Usage: ", "Try '"))]
    if not lines:
        return "no error message"
    if len(lines) > 1:
        return f"{len(lines)} lines on stderr"
    line = lines[0]
    if not line.startswith("Error: "):
        return "no 'Error:' line"
    if len(line) > MAX_ERROR_CHARS:
        return f"error of {len(line)} characters"
    return None


ZYGOTE = """
import json, os, resource, sys, time, traceback
import edgeexplore.cli as cli
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            resource.setrlimit(resource.RLIMIT_AS, (req["memory"], req["memory"]))
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            for fd, name, mode in ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY),
                                   (2, "stderr", os.O_WRONLY)):
                os.dup2(os.open(req[name], mode), fd)
            sys.argv = ["edgeexplore", *req["argv"]]
            try:
                code = cli.main(req["argv"])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(locals().get("code", 1))
    deadline = time.monotonic() + req["timeout"]
    rc = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.02)
    if rc is None:
        os.killpg(pid, 9)
        os.waitpid(pid, 0)
    print(json.dumps({"rc": rc}), flush=True)
"""


class Zygote:
    """A process that imported edgeexplore once and forks a child per case: the same
    ``edgeexplore.cli.main`` as the console script, without 3 s of imports per case."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                     env={**os.environ, "OMP_NUM_THREADS": "1"})

    def run(self, argv: list[str], cwd: Path, env: dict[str, str], stdin: str,
            io: Path) -> int | None:
        (io / "stdin").write_text(stdin)
        for name in ("stdout", "stderr"):
            (io / name).write_bytes(b"")
        request = {"argv": argv, "cwd": str(cwd), "env": env, "timeout": TIMEOUT_S,
                   "memory": MEMORY_LIMIT, **{n: str(io / n) for n in ("stdin", "stdout",
                                                                       "stderr")}}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["rc"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def run_case(index: int, case: Case, work: Path, fx: Path, zygotes: queue.Queue | None
             ) -> Result:
    folder = work / "cases" / f"{index:04d}"
    io = work / "io" / f"{index:04d}"
    for p in (folder, io):
        if p.exists():
            _release(p)
            shutil.rmtree(p)
        p.mkdir(parents=True)
    shutil.copy(fx / "store.db", folder / STORE)
    if case.setup:
        case.setup(folder)
    before = snapshot(folder, fx)
    env = {k: v for k, v in os.environ.items() if k != "EDGEEXPLORE_STORAGE"}
    env.update(case.env, PYTHONUNBUFFERED="1", COLUMNS="200", MPLCONFIGDIR=str(work / "mpl"),
               OMP_NUM_THREADS="1")
    started = time.monotonic()
    if zygotes is not None:
        zygote = zygotes.get()
        try:
            rc = zygote.run(case.argv, folder, env, case.stdin, io)
        finally:
            zygotes.put(zygote)
        out, err = (io / "stdout").read_bytes(), (io / "stderr").read_bytes()
    else:
        proc = subprocess.Popen([*EXE, *case.argv], cwd=folder, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=_limits)  # noqa: PLW1509
        try:
            out, err = proc.communicate(case.stdin.encode(), timeout=TIMEOUT_S)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out, err = proc.communicate()
            rc = None
    seconds = time.monotonic() - started
    out_s, err_s = out.decode(errors="replace"), err.decode(errors="replace")
    after = snapshot(folder, fx)
    faults = []
    if "Traceback" in out_s + err_s:
        faults.append("traceback")
    if rc == 0:
        faults.append("exit-0")
    if before != after:
        faults.append("store changed")
    if rc is None:
        faults.append("time-out")
    elif rc < 0:
        faults.append(f"killed by signal {-rc}")
    if rc is not None and rc > 0 and "traceback" not in faults:
        why = one_sentence(err_s)
        if why:
            faults.append(f"message: {why}")
    if case.hidden and case.hidden in out_s + err_s:
        faults.append("secret printed")
    changed = sorted(set(before.items()) ^ set(after.items()))
    result = Result(case, rc, out_s, err_s, seconds, faults,
                    sorted({Path(k).relative_to(work).as_posix() for k, _ in changed}))
    for p in (folder, io):
        _release(p)
        shutil.rmtree(p, ignore_errors=True)
    return result


def _short(text: str, n: int = 150) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 20] + f" … ({len(text)} chars)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-j", "--jobs", type=int, default=3, help="cases run at once")
    parser.add_argument("-k", dest="only", action="append", default=[],
                        help="only cases whose name holds this text (repeatable)")
    parser.add_argument("--work", type=Path, help="keep fixtures and the store here (reused)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every error line")
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    parser.add_argument("--exec", action="store_true",
                        help="start `python -m edgeexplore` for every case (slow: ~3 s of "
                             "imports each) instead of forking it from a process that imported "
                             "edgeexplore once")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="bad-input-sweep-"))
    work = work.resolve()
    fx = work / "fx"
    os.environ["SWEEP_FX"] = str(fx)
    all_cases = cases(fx)
    if args.only:
        all_cases = [c for c in all_cases if any(k in c.name for k in args.only)]
    if args.list:
        for i, c in enumerate(all_cases, 1):
            print(f"{i:4d} {c.name}")
        return 0
    if not (fx / "store.db").exists():
        started = time.monotonic()
        make_fixtures(fx)
        prepare_store(fx / "store.db")
        print(f"fixtures and store prepared in {time.monotonic() - started:.0f}s under {fx}",
              flush=True)
    (work / "mpl").mkdir(exist_ok=True)

    started = time.monotonic()
    results: list[Result] = []
    zygotes: queue.Queue | None = None
    if not args.exec:
        zygotes = queue.Queue()
        for _ in range(args.jobs):
            zygotes.put(Zygote())
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_case, i, c, work, fx, zygotes)
                   for i, c in enumerate(all_cases)]
        for future in futures:
            r = future.result()
            results.append(r)
            status = "PASS" if not r.faults else "FAIL"
            line = f"{status} {r.case.name[:60]:60s} rc={r.rc!s:4s} {r.seconds:5.1f}s"
            if r.faults:
                line += "  " + "; ".join(r.faults)
            print(line, flush=True)
            if r.faults or args.verbose:
                last = [ln for ln in (r.err or r.out).splitlines() if ln.strip()]
                print(f"     {_short(last[-1] if last else '(no output)')}", flush=True)
                if r.changed:
                    print(f"     changed: {', '.join(r.changed[:5])}", flush=True)

    while zygotes is not None and not zygotes.empty():
        zygotes.get().close()
    failed = [r for r in results if r.faults]
    count = {k: sum(k in r.faults for r in results) for k in ("traceback", "exit-0",
                                                               "store changed")}
    other = [r for r in failed if not set(r.faults) & set(count)]
    print(f"\n{len(results)} cases in {time.monotonic() - started:.0f}s; failures with only a "
          f"message fault, crash or time-out: {len(other)}")
    print(f"bad-input sweep: {len(results)} cases, {len(failed)} failures (tracebacks "
          f"{count['traceback']}, exit-0 {count['exit-0']}, store changed "
          f"{count['store changed']})")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
