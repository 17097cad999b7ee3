"""``edgeexplore search`` (the main job) and ``edgeexplore spaces``."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from .. import store
from ..errors import EdgeExploreError
from ..evaluation.outcome import INTERRUPTED
from ..store import db
from ..store.trial_latency import PREDICTED
from ..units import duration, format_values, human_count
from .options import SEED, format_option, storage_option
from .options import console as make_console
from .output import Column, emit


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _source(o) -> str:
    """`` (predicted)`` for a latency the learned predictor gave and nothing measured."""
    return f" ({PREDICTED})" if o.latency_source == PREDICTED else ""


def _trial_line(o, progress: str = "") -> str:
    """One trial, named by its id (what `trials show`, `curves`, `rerun` and plots use)."""
    num = f"trial {o.id}{progress}"
    if o.state in (store.COMPLETE, store.PRUNED):
        reused = " (reused)" if o.reused else ""
        line = (f"{num} {o.state}{reused}: accuracy {_fmt(o.accuracy, '.3f')}, "
                f"latency {_fmt(o.latency_ms, '.2f')} ms{_source(o)}, "
                f"{human_count(o.flops)} FLOPs, {human_count(o.params)} params")
        secs = o.timings.get("total_seconds")
        if secs is not None:
            line += f" [{secs:.1f}s]"
        return line
    return f"{num} {o.state}: {o.reason or ''}"


class _Overall:
    """Where the run stands: "k of N" and an ETA from the trials finished so far.

    Only trials that use the budget count (infeasible samples and interrupted trials do not,
    as in the budget itself); the ETA is the mean time per counted trial times those left.
    """

    def __init__(self, trials: int | None, seconds: float | None) -> None:
        self.trials, self.seconds = trials, seconds
        self.started = time.monotonic()
        self.done = 0

    def after(self, o) -> str:
        if o.state != store.INFEASIBLE and not (o.reason or "").startswith(INTERRUPTED):
            self.done += 1
        elapsed = time.monotonic() - self.started
        if self.trials is not None:
            left = self.trials - self.done
            eta = f", ETA {duration(elapsed / self.done * left)}" if self.done and left else ""
            return f" ({self.done} of {self.trials}{eta})"
        if self.seconds is not None:
            return f" ({self.done} done, {duration(max(0.0, self.seconds - elapsed))} left)"
        return ""


def _summary_table(rows: list[store.TrialResult], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col, just in (("trial", "right"), ("state", "left"), ("accuracy", "right"),
                      ("latency ms", "right"), ("FLOPs", "right"), ("params", "right"),
                      ("train s", "right"), ("architecture / reason", "left")):
        table.add_column(col, justify=just, overflow="fold")
    for r in rows:
        style = {store.COMPLETE: "", store.INFEASIBLE: "dim", store.FAILED: "red",
                 store.DIVERGED: "red", store.PRUNED: "yellow"}.get(r.state, "")
        what = r.reason if r.state != store.COMPLETE else _short(r.architecture)
        if r.reused_from:
            what = f"(reused trial {r.reused_from}) {what}"
        table.add_row(
            str(r.id), r.state,
            _fmt(r.accuracy, ".3f"), _fmt(r.latency_ms, ".2f"),
            human_count(r.flops), human_count(r.params),
            _fmt(r.train_seconds, ".1f"), what or "", style=style,
        )
    return table


def _short(a: store.Architecture | None) -> str:
    """``lgl/lgl/sra/lgl d=1,1,3,2 w=36,72,144,288 mlp=4,4,4,4 sr=4,2,2,1 @64x64 [hash]``: an
    architecture in one cell; mlp ratios and sample rates included, since architectures often
    differ only there."""
    if a is None:
        return ""
    per_stage = range(1, 5)
    blocks = "/".join(getattr(a, f"stage{i}_block") for i in per_stage)
    mlp = ",".join(f"{getattr(a, f'stage{i}_mlp_ratio'):g}" for i in per_stage)
    sr = ",".join(str(getattr(a, f"stage{i}_sample_rate")) for i in per_stage)
    return f"{blocks} d={a.depths} w={a.widths} mlp={mlp} sr={sr} @{a.resolution} [{a.hash[:8]}]"


def _arch_text(url: str, arch_hash: str | None) -> str:
    if arch_hash is None:
        return ""
    with db.session_scope(url) as s:
        return _short(store.get_architecture(s, arch_hash))


@click.command("search")
@click.argument("study", required=False)
@click.option("--budget", "-b", default=None,
              help="More trials for this command to run, shared by its workers (20), or a "
                   "wall-clock limit (45m, 2h, 90s). Infeasible samples do not count against a "
                   "trial budget.")
@click.option("--max-trials", default=None, type=int,
              help="Cap on the study's trials in all (finished plus running), however many "
                   "commands on however many hosts work on it; each stops at the cap.")
@click.option("--name", "-n", default=None,
              help="Study name (default: the recipe's name). The same name again resumes the "
                   "study and extends it by the budget.")
@storage_option()
@click.option("--backend", default=None, help="Latency backend, overriding the recipe's "
              "(see `edgeexplore backends`); `predicted` predicts latency and measures the "
              "trials near the front with the recipe's backend.")
@click.option("--data", default=None, help="Data spec, overriding the recipe's (synthetic, "
              "cifar10, folder:PATH, with options such as subset=100).")
@click.option("--workers", "-j", default=1, show_default=True, type=int,
              help="Worker processes sharing the study and the database.")
@click.option("--devices", default=None,
              help="One worker per device: auto (every visible GPU, else the CPU) or a list "
                   "such as cuda:0,cuda:1 or cpu,cpu; instead of --workers.")
@click.option("--retries", default=1, show_default=True, type=int,
              help="Times a trial whose worker died (killed, out of memory, host lost) is run "
                   "again with the same architecture.")
@click.option("--seed", default=None, type=SEED,
              help="Training and sampler seed (default: the recipe's).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, only the summary.")
def search(study: str | None, budget: str | None, max_trials: int | None, name: str | None,
           storage: str | None, backend: str | None, data: str | None, workers: int,
           devices: str | None, retries: int, seed: int | None, quiet: bool) -> None:
    """Search architectures: sample, check constraints, time, proxy-train and store each trial.

    STUDY is a study recipe (a YAML file, or the name of one in studies/: quickstart, cifar10);
    default: quickstart, which runs on built-in synthetic data in a few minutes on a CPU.
    Results go to one SQLite file shared with Optuna, so `optuna trials --storage
    sqlite:///edgeexplore.db --study-name NAME`, optuna-dashboard and `edgeexplore trials` all
    read them. Ctrl-C stops cleanly; the same command resumes.

    \b
    Examples:
      edgeexplore search --budget 4
      edgeexplore search studies/cifar10.yaml --budget 45m --workers 2
      edgeexplore search --budget 4 --name quickstart        # 4 more: 8 in all
      edgeexplore search studies/cifar10.yaml --max-trials 200 --devices auto \\
          --storage postgresql+psycopg://user@db/nas         # the same on every host
    """
    console = make_console()
    if not quiet:
        # torch, Optuna and the data take seconds to load: say something first
        console.print("Starting: loading the recipe, torch and the data ...")
    import optuna

    from ..search.devices import parse_devices
    from ..search.recipe import StudyRecipe, resolve_recipe
    from ..search.study import (
        Budget,
        StudyInterrupted,
        parse_budget,
        resume_command,
        run_study,
        summary_rows,
    )

    # our own per-trial lines replace Optuna's INFO log
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    b = parse_budget(budget) if budget is not None else Budget()
    pins, note = parse_devices(devices) if devices is not None else (None, None)
    if note:
        console.print(Text(note, style="yellow"))
    own = StudyRecipe.load(resolve_recipe(study))
    recipe = own.with_overrides(backend=backend, data=data, seed=seed)
    if data and (own.subset or own.val_subset):
        console.print(Text(f"--data replaces the recipe's data {own.data}: its subset "
                           f"({own.subset or '-'} train / {own.val_subset or '-'} val images per "
                           "class) is dropped; add subset=N,val_subset=N to the spec to keep one",
                           style="yellow"))
    overall = _Overall(b.trials, b.seconds)

    backend_text = (f"predicted (measured near the front by {recipe.backend})"
                    if recipe.prediction else recipe.backend)

    def on_start(info: dict) -> None:
        target = f", until {info['target']} trials" if info["target"] is not None else ""
        cap = f", study capped at {info['max_trials']}" if info["max_trials"] else ""
        on = f"; workers on {', '.join(info['devices'])}" if info["devices"] else ""
        console.print(Text.assemble(
            (f"study {info['name']}", "bold"),
            f" in {db.shown(info['url'])}: {info['before']} trials "
            f"stored{target}; budget {b}{cap}{on}; "
            f"space {recipe.space.name}, data {recipe.data}, "
            f"backend {backend_text}, sampler {recipe.sampler}, objectives "
            f"{', '.join(map(str, recipe.objectives))}"
        ))
        console.print(Text(f"data {info['data']}"))
        if info["recovered"]:
            console.print(Text(f"{info['recovered']} trial(s) left running by a stopped worker "
                               "were marked failed", style="yellow"))

    def report(o) -> None:
        line = _trial_line(o, overall.after(o))
        if o.state in (store.COMPLETE, store.PRUNED):
            line += " " + _arch_text(db.normalise_url(storage), o.arch_hash)
        console.print(Text(line))

    try:
        run = run_study(recipe, b, name=name, storage=storage, workers=workers,
                        progress=not quiet, report=report, on_start=on_start,
                        max_trials=max_trials, retries=retries, devices=pins)
    except StudyInterrupted as e:
        # Ctrl-C is not an error: say what is kept and how to go on, exit like a shell does
        click.echo(f"Stopped by Ctrl-C: {e}", err=True)
        raise click.Abort from None  # the CLI's entry point exits with status 130
    rows = summary_rows(run.storage, run.study.name)
    shown = [r for r in rows if r.state != store.INFEASIBLE][-20:]
    console.print(_summary_table(shown, f"study {run.study.name}: last {len(shown)} trials"))
    counts = ", ".join(f"{v} {k}" for k, v in sorted(run.study.states.items()))
    best = format_values({k: v for k, v in run.study.best.items() if v is not None})
    console.print(
        f"{len(run.ran)} trials this run in {run.seconds:.0f}s; the study has {counts}"
        f"{f' (best {best})' if best else ''}. "
        f"Extend it: {resume_command(run)}",
        soft_wrap=True,  # the command stays one line, to copy whole
    )


SPACE_COLUMNS = [
    Column("name"), Column("file"),
    Column("combinations", show=lambda n: "∞" if n is None else f"{n:.2e}" if n else "-",
           right=True),
    Column("presets", "presets inside", lambda p: ", ".join(p) if p else "-"),
    Column("description"), Column("problem"),
]


KIND_COLUMNS = [
    Column("block"), Column("options", "options (default)"),
    Column("samples_rate", "samples a rate", lambda v: "yes" if v else "-"), Column("what"),
]


@click.command("spaces")
@click.argument("space", required=False)
@format_option()
def spaces(space: str | None, fmt: str) -> None:
    """List the shipped search spaces, or show the parameters of SPACE (a name or a file).

    Combinations null (∞ in the table) means unbounded: a parameter takes a continuous range. A
    space file that cannot be read is listed with its problem (and 0 combinations).
    """
    from ..config import PRESETS
    from ..search.space import list_spaces, resolve_space

    if space is None:
        rows = []
        for path in list_spaces():
            row = {"name": path.stem, "file": _rel(path), "combinations": 0, "presets": [],
                   "description": "", "problem": None}
            try:
                sp = resolve_space(path)
            except EdgeExploreError as e:
                rows.append({**row, "problem": str(e)})
                continue
            inside = [n for n, c in PRESETS.items() if sp.contains(c, check_resolution=False)]
            rows.append({**row, "name": sp.name, "combinations": sp.size(),
                         "presets": inside, "description": sp.description})
        emit(rows, fmt, SPACE_COLUMNS, title="search spaces")
        if fmt == "table":  # csv/json stay one listing; the kinds have `python -m edgeexplore.kinds`
            from ..config import DEFAULT_BLOCK

            emit(_block_kind_rows(), fmt, KIND_COLUMNS,
                 title=f"block kinds (a stage that names none: {DEFAULT_BLOCK})")
        return
    sp = resolve_space(space)
    emit([{"parameter": k, "values": v} for k, v in sp.rows()], fmt,
         [Column("parameter"), Column("values")], title=f"{sp.name}: {sp.description}")


def _block_kind_rows() -> list[dict]:
    """The block kinds a space may name, as declared (the table in docs/architectures.md, for the
    terminal)."""
    from ..kinds import BLOCKS

    return [{"block": k.name,
             "options": ", ".join(f"{n}={o.default}" for n, o in k.options.items()) or "-",
             "samples_rate": k.samples_rate, "what": k.help} for k in BLOCKS.values()]


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


COMMANDS = [search, spaces]
