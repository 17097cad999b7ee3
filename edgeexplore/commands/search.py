"""``edgeexplore search`` (the main job) and ``edgeexplore spaces``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import store
from ..errors import EdgeExploreError
from ..store import db


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _trial_line(o) -> str:
    num = f"#{o.number}" if o.number is not None else f"id {o.id}"
    if o.state in (store.COMPLETE, store.PRUNED):
        reused = " (reused)" if o.reused else ""
        line = (f"trial {num} {o.state}{reused}: accuracy {_fmt(o.accuracy, '.3f')}, "
                f"latency {_fmt(o.latency_ms, '.2f')} ms, "
                f"{_fmt(o.flops and o.flops / 1e6, '.1f')} MFLOPs, "
                f"{_fmt(o.params and o.params / 1e6, '.2f')} M params")
        secs = o.timings.get("total_seconds")
        if secs is not None:
            line += f" [{secs:.1f}s]"
        return line
    return f"trial {num} {o.state}: {o.reason or ''}"


def _summary_table(rows: list[store.TrialResult], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col, just in (("#", "right"), ("state", "left"), ("accuracy", "right"),
                      ("latency ms", "right"), ("MFLOPs", "right"), ("params M", "right"),
                      ("train s", "right"), ("architecture / reason", "left")):
        table.add_column(col, justify=just, overflow="fold")
    for r in rows:
        style = {store.COMPLETE: "", store.INFEASIBLE: "dim", store.FAILED: "red",
                 store.DIVERGED: "red", store.PRUNED: "yellow"}.get(r.state, "")
        what = r.reason if r.state != store.COMPLETE else _short(r.architecture)
        if r.reused_from:
            what = f"(reused #{r.reused_from}) {what}"
        table.add_row(
            str(r.number if r.number is not None else "-"), r.state,
            _fmt(r.accuracy, ".3f"), _fmt(r.latency_ms, ".2f"),
            _fmt(r.flops and r.flops / 1e6, ".1f"), _fmt(r.params and r.params / 1e6, ".3f"),
            _fmt(r.train_seconds, ".1f"), what or "", style=style,
        )
    return table


def _short(a: store.Architecture | None) -> str:
    """``lgl/lgl/sra/lgl d=1,1,3,2 w=36,72,144,288 @64x64``: an architecture in one cell."""
    if a is None:
        return ""
    blocks = "/".join(getattr(a, f"stage{i}_block") for i in range(1, 5))
    return f"{blocks} d={a.depths} w={a.widths} @{a.resolution} [{a.hash[:8]}]"


@click.command("search")
@click.argument("study", required=False)
@click.option("--budget", "-b", required=True,
              help="More trials to run (20) or a wall-clock limit (45m, 2h, 90s). Infeasible "
                   "samples do not count against a trial budget.")
@click.option("--name", "-n", default=None,
              help="Study name (default: the recipe's name). The same name again resumes the "
                   "study and extends it by the budget.")
@click.option("--storage", default=None,
              help="Database URL or file (default: edgeexplore.db here, or $EDGEEXPLORE_STORAGE).")
@click.option("--backend", default=None, help="Latency backend, overriding the recipe's "
              "(see `edgeexplore backends`).")
@click.option("--data", default=None, help="Data spec, overriding the recipe's (synthetic, "
              "cifar10, folder:PATH, with options such as subset=100).")
@click.option("--workers", "-j", default=1, show_default=True, type=int,
              help="Worker processes sharing the study and the database.")
@click.option("--seed", default=None, type=click.IntRange(min=0),
              help="Training and sampler seed (default: the recipe's).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, only the summary.")
def search(study: str | None, budget: str, name: str | None, storage: str | None,
           backend: str | None, data: str | None, workers: int, seed: int | None,
           quiet: bool) -> None:
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
    """
    import optuna

    from ..search.recipe import StudyRecipe, resolve_recipe
    from ..search.study import StudyInterrupted, parse_budget, run_study, summary_rows

    # our own per-trial lines replace Optuna's INFO log
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # piped output has no terminal width; keep table rows on one line for logs and grep
    console = Console(width=None if sys.stdout.isatty() else 160)
    b = parse_budget(budget)
    recipe = StudyRecipe.load(resolve_recipe(study)).with_overrides(backend=backend, data=data,
                                                                     seed=seed)

    def on_start(info: dict) -> None:
        target = f", until {info['target']} trials" if info["target"] is not None else ""
        console.print(
            f"[bold]study {info['name']}[/bold] in {db.shown(info['url'])}: {info['before']} trials "
            f"stored{target}; budget {b}; space {recipe.space.name}, data {recipe.data}, "
            f"backend {recipe.backend}, sampler {recipe.sampler}, objectives "
            f"{', '.join(map(str, recipe.objectives))}"
        )
        if info["recovered"]:
            console.print(f"[yellow]{info['recovered']} trial(s) left running by a stopped "
                          "worker were marked failed[/yellow]")

    def report(o) -> None:
        console.print(_trial_line(o))

    try:
        summary = run_study(recipe, b, name=name, storage=storage, workers=workers,
                            progress=not quiet, report=report, on_start=on_start)
    except StudyInterrupted as e:
        # Ctrl-C is not an error: say what is kept and how to go on, exit like a shell does
        click.echo(f"Stopped by Ctrl-C: {e}", err=True)
        raise click.Abort from None  # the CLI's entry point exits with status 130
    rows = summary_rows(summary.storage, summary.name)
    shown = [r for r in rows if r.state != store.INFEASIBLE][-20:]
    console.print(_summary_table(shown, f"study {summary.name}: last {len(shown)} trials"))
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts.items()))
    console.print(
        f"{len(summary.ran)} trials this run in {summary.seconds:.0f}s; the study has {counts}. "
        f"Extend it: edgeexplore search {summary.recipe.label} --name {summary.name} "
        f"--budget N"
    )


@click.command("spaces")
@click.argument("space", required=False)
def spaces(space: str | None) -> None:
    """List the shipped search spaces, or show the parameters of SPACE (a name or a file)."""
    from ..config import PRESETS
    from ..search.space import list_spaces, resolve_space

    console = Console()
    if space is None:
        table = Table(title="search spaces", title_justify="left")
        for col in ("name", "file", "combinations", "presets inside", "description"):
            table.add_column(col, overflow="fold")
        for path in list_spaces():
            try:
                sp = resolve_space(path)
            except EdgeExploreError as e:
                table.add_row(path.stem, str(path), "-", "-", f"[red]{e}[/red]")
                continue
            inside = [n for n, c in PRESETS.items() if sp.contains(c, check_resolution=False)]
            size = sp.size()
            table.add_row(sp.name, _rel(path), f"{size:.2e}" if size else "∞",
                          ", ".join(inside) or "-", sp.description)
        console.print(table)
        console.print(_block_kinds_table())
        return
    sp = resolve_space(space)
    table = Table(title=f"{sp.name}: {sp.description}", title_justify="left")
    table.add_column("parameter")
    table.add_column("values", overflow="fold")
    for k, v in sp.rows():
        table.add_row(escape(k), escape(v))  # values are data, not rich markup
    console.print(table)


def _block_kinds_table() -> Table:
    """The block kinds a space may name, as declared (README's table, for the terminal)."""
    from ..config import DEFAULT_BLOCK
    from ..kinds import BLOCKS

    table = Table(title=f"block kinds (a stage that names none: {DEFAULT_BLOCK})",
                  title_justify="left")
    for col in ("block", "options (default)", "samples a rate", "what"):
        table.add_column(col, overflow="fold")
    for kind in BLOCKS.values():
        opts = ", ".join(f"{k}={o.default}" for k, o in kind.options.items())
        table.add_row(kind.name, escape(opts) or "-", "yes" if kind.samples_rate else "-",
                      escape(kind.help))
    return table


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


COMMANDS = [search, spaces]
