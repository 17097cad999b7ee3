"""``edgeexplore studies``, ``trials list|show|export`` and ``pareto``: reading the store.

Thin wrappers over :mod:`edgeexplore.analysis.query`; every listing prints as a table, CSV or JSON.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import numpy as np

from ..analysis import query
from ..analysis.pareto import DISPLAY, ParetoResult, display, format_value
from ..errors import EdgeExploreError
from ..store.db import default_url

STORAGE_HELP = "Database URL or SQLite path (default: $EDGEEXPLORE_STORAGE or edgeexplore.db)."
FORMATS = click.Choice(["table", "csv", "json"])


def storage_option(f):
    return click.option("--storage", default=None, metavar="URL", help=STORAGE_HELP)(f)


def _console():
    from rich.console import Console

    # Piped output keeps whole rows instead of wrapping at rich's 80-column default.
    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 200
    return Console(width=width, highlight=False)


def _emit_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, default=str))
    elif fmt == "csv":
        buf = io.StringIO()
        names = list(rows[0]) if rows else []
        writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)


def _fmt(name: str, value: Any) -> str:
    """A stored value in display units without the unit (the column header carries it)."""
    if value is None:
        return "-"
    _, _, scale = display(name)
    v = value * scale
    if not isinstance(v, float) and scale == 1:
        return str(v)
    return f"{v:.2f}" if abs(v) >= 1 or v == 0 else f"{v:.3g}"


def _header(name: str) -> str:
    label, unit, _ = display(name)
    return f"{label} ({unit})" if unit else label


# -- studies ------------------------------------------------------------------------------------

@click.command("studies")
@storage_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
def studies_cmd(storage: str | None, fmt: str) -> None:
    """List the studies in the store: trials by state, objectives and best values."""
    studies = query.list_studies(storage=storage or default_url())
    if fmt != "table":
        _emit_rows([asdict(s) for s in studies], fmt)
        return
    if not studies:
        click.echo("The store holds no trials yet (run `edgeexplore search`).")
        return
    from rich.table import Table

    table = Table(title="Studies")
    for col in ("study", "trials", "by state", "objectives", "best", "last trial"):
        table.add_column(col, justify="right" if col == "trials" else "left")
    for s in studies:
        states = ", ".join(f"{k} {v}" for k, v in sorted(s.states.items()))
        best = ", ".join(f"{k} {format_value(k, v)}" for k, v in s.best.items())
        table.add_row(s.name, str(s.trials), states, ", ".join(s.objectives), best,
                      s.last_trial or "-")
    _console().print(table)


# -- trials -------------------------------------------------------------------------------------

@click.group("trials")
def trials_group() -> None:
    """List, show and export stored trials.

    \b
    Filters (--where) use a small language over stored fields, e.g.
      latency_ms < 10 and accuracy > 0.6 and stage3.block == "lgl"
      state in ["complete", "pruned"] and not (stage1.options.local_agg == "lsa")
      flops < 1e9 or params <= 2e6
    and/or/not, parentheses, == != < <= > >=, `in [...]`, strings in quotes, true/false/null.
    An unknown field name lists the valid ones.
    """


_where = click.option("--where", default=None, metavar="EXPR",
                      help='Filter, e.g. \'latency_ms < 10 and stage3.block == "lgl"\'.')
_sort = click.option("--sort", default=None, metavar="KEY",
                     help="Sort keys, comma-separated; '-' for descending (e.g. -accuracy).")
_study = click.option("--study", "studies", multiple=True, metavar="NAME",
                      help="Only this study (repeat for several).")


@trials_group.command("list")
@_study
@_where
@_sort
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Show at most N trials.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@storage_option
def trials_list(studies: tuple[str, ...], where: str | None, sort: str | None,
                limit: int | None, fmt: str, storage: str | None) -> None:
    """List trials (optionally filtered and sorted)."""
    rows = query.list_trials(study=list(studies) or None, where=where, sort=sort, limit=limit,
                             storage=storage)
    if fmt != "table":
        _emit_rows([asdict(r) for r in rows], fmt)
        return
    if not rows:
        click.echo("No trials match.")
        return
    from rich.table import Table

    show_energy = any(r.energy_mj is not None for r in rows)
    show_backend = len({r.backend for r in rows}) > 1
    table = Table(title=f"{len(rows)} trial{'s' if len(rows) != 1 else ''}")
    cols = ["id", "study", "#", "state", _header("accuracy"), _header("latency_ms"),
            _header("flops"), _header("params")]
    cols += [_header("energy_mj")] if show_energy else []
    cols += ["backend"] if show_backend else []
    cols += ["blocks", "depths", "widths"]
    for c in cols:
        table.add_column(c, justify="right" if c in ("id", "#") or "(" in c else "left")
    for r in rows:
        cells = [str(r.id), r.study, "-" if r.number is None else str(r.number), r.state,
                 _fmt("accuracy", r.accuracy), _fmt("latency_ms", r.latency_ms),
                 _fmt("flops", r.flops), _fmt("params", r.params)]
        cells += [_fmt("energy_mj", r.energy_mj)] if show_energy else []
        cells += [r.backend or "-"] if show_backend else []
        cells += [r.blocks or "-", r.depths or "-", r.widths or "-"]
        table.add_row(*cells)
    _console().print(table)


@trials_group.command("show")
@click.argument("trial_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--save-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the trial's architecture as an ArchConfig JSON file (for "
                   "`measure FILE`, `ArchConfig.load`, training it in full).")
@storage_option
def trials_show(trial_id: int, fmt: str, save_config: Path | None, storage: str | None) -> None:
    """Everything stored about one trial: stages, metrics, latency, curve, environment."""
    t = query.get_trial(trial_id, storage=storage)
    if save_config is not None:
        _save_config(t, save_config)
    if fmt == "json":
        click.echo(json.dumps(asdict(t), indent=1, default=str))
        return
    from rich.table import Table

    con = _console()
    con.print(f"[bold]Trial {t.id}[/bold]  study {t.study}  #{t.number}  state [bold]{t.state}"
              f"[/bold]  seed {t.seed}  architecture {t.arch_hash or '-'}")
    if t.reason:
        con.print(f"reason: {t.reason}")
    if t.reused_from:
        con.print(f"training results reused from trial {t.reused_from}")
    if t.stages:
        st = Table(title=f"Configuration ({t.resolution or '-'} input, "
                         f"{(t.config or {}).get('num_classes', '-')} classes)")
        for c in ("stage", "block", "depth", "width", "heads", "mlp_ratio", "sample_rate",
                  "options"):
            st.add_column(c)
        for s in t.stages:
            opts = ", ".join(f"{k}={v}" for k, v in sorted(s.get("options", {}).items()))
            st.add_row(*(str(s.get(c, "-")) for c in ("stage", "block", "depth", "width",
                                                       "heads", "mlp_ratio", "sample_rate")),
                       opts or "-")
        con.print(st)
    mt = Table(title="Metrics")
    mt.add_column("metric")
    mt.add_column("value")
    shown = {**t.metrics, **{k: v for k, v in t.cost.items() if k != "per_stage_flops"}}
    for k, v in _flatten(shown).items():
        if k == "latency.device":
            continue  # the latency table below names the device
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            mt.add_row(k, _cell(v))
        else:
            mt.add_row(k, format_value(k, v) if k in DISPLAY else _cell(v))
    if t.cost.get("per_stage_flops"):
        per = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in t.cost["per_stage_flops"].items())
        mt.add_row("FLOPs per stage", per)
    for k, v in t.timings.items():
        if v is not None:
            mt.add_row(k.replace("_", " "), f"{v:.2f}")
    con.print(mt)
    settings = json.dumps(t.backend_settings) if t.backend_settings else ""
    con.print(f"backend {t.backend or '-'} {settings}   data {t.data or '-'}")
    if t.latency:
        lt = Table(title="Latency measurements of this architecture (ms)")
        keys = [k for k in query.LATENCY_COLUMNS if any(k in m for m in t.latency)]
        for k in keys:
            lt.add_column(k)
        for m in t.latency:
            lt.add_row(*(_cell(m.get(k)) for k in keys))
        con.print(lt)
    if t.curve:
        ct = Table(title="Training curve")
        keys = list(dict.fromkeys(k for e in t.curve for k in e))
        for k in keys:
            ct.add_column(k, justify="right")
        for e in t.curve:
            ct.add_row(*(_cell(e.get(k)) for k in keys))
        con.print(ct)
    if t.recipe:
        con.print("recipe: " + ", ".join(f"{k}={v}" for k, v in t.recipe.items()))
    if t.environment:
        con.print("environment: " + ", ".join(f"{k}={v}" for k, v in t.environment.items()
                                                if v is not None))


def _save_config(t: query.TrialDetail, path: Path) -> None:
    from ..config import ArchConfig

    if not t.config:
        raise EdgeExploreError(f"trial {t.id} has no architecture to save ({t.state} before "
                               "one was sampled)")
    try:
        path.write_text(ArchConfig.from_dict(t.config).to_json(indent=2) + "\n")
    except OSError as e:
        raise EdgeExploreError(f"cannot write {path}: {e.strerror}") from None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"latency": {"median_ms": 3}} → {"latency.median_ms": 3} (one row per number)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and not prefix:
            out.update(_flatten(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return str(v)


@trials_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("--output", "-o", default=None, metavar="FILE", help="Write here (default: stdout).")
@_study
@_where
@_sort
@click.option("--limit", type=click.IntRange(min=0), default=None)
@storage_option
def trials_export(fmt: str, output: str | None, studies: tuple[str, ...], where: str | None,
                  sort: str | None, limit: int | None, storage: str | None) -> None:
    """Export every stored column of the trials (and their architecture) as CSV or JSON."""
    text = query.export_trials(format=fmt, output=output, study=list(studies) or None,
                               where=where, sort=sort, limit=limit, storage=storage)
    if output is None:
        click.echo(text, nl=False)
    else:
        n = text.count("\n") - 1 if fmt == "csv" else len(json.loads(text))
        click.echo(f"Wrote {n} trials to {output}.", err=True)


# -- pareto -------------------------------------------------------------------------------------

@click.command("pareto")
@click.option("--study", "studies", multiple=True, metavar="NAME",
              help="Study to analyse (repeat for several; default: all).")
@click.option("--objectives", default=None, metavar="LIST",
              help="Two or three stored metrics with directions, e.g. accuracy:max,latency_ms:min "
                   "(default: the study's own objectives).")
@click.option("--backend", default=None, metavar="NAME",
              help="Only trials timed on this latency backend (and time the presets on it).")
@_where
@click.option("--plot", "plot_path", default=None, metavar="FILE",
              help="Draw the front to FILE.png (or .svg, .pdf) or a self-contained FILE.html.")
@click.option("--presets/--no-presets", default=True, show_default=True,
              help="Add edgevit_xxs/xs/s as reference points, measured like the trials.")
@click.option("--train-presets", is_flag=True,
              help="Also proxy-train the presets with the study's recipe (slow) so they get an "
                   "accuracy; otherwise they appear as reference lines on the cost axes only.")
@click.option("--limit", type=click.IntRange(min=0), default=40, show_default=True,
              help="Rows of the front to print (evenly spread along it, knee included); 0 for "
                   "all. JSON output always has the whole front.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@storage_option
def pareto_cmd(studies: tuple[str, ...], objectives: str | None, backend: str | None,
               where: str | None, plot_path: str | None, presets: bool, train_presets: bool,
               limit: int, fmt: str, storage: str | None) -> None:
    """The non-dominated trials, their hypervolume and knee point, and a trade-off plot.

    Membership is Optuna's own non-domination test; the hypervolume's reference point is, per
    objective, the worst observed value plus 10% of the observed range; the knee is the front
    point farthest from the line (plane) through the front's extremes in normalised space.
    """
    result = query.pareto_front(
        study=list(studies) or None, objectives=objectives, backend=backend, where=where,
        presets=presets, train_presets=train_presets, storage=storage,
    )
    if plot_path:
        from ..analysis.pareto import plot

        title = "Pareto front: " + ", ".join(studies or sorted(set(result.groups)))
        if backend:
            title += f" ({backend})"
        plot(result, plot_path, title=title)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=1, default=str))
    else:
        _print_front(result, storage, limit)
    if plot_path:
        click.echo(f"Plot written to {plot_path}.", err=True)


def _print_front(result: ParetoResult, storage: str | None, limit: int = 0) -> None:
    from rich.table import Table

    objs = result.objectives
    whole = result.front
    front = whole
    if 0 < limit < len(whole):
        # Spread the rows along the front (its ends included) rather than cut one end off.
        picks = set(np.rint(np.linspace(0, len(whole) - 1, limit)).astype(int).tolist())
        front = [i for n, i in enumerate(whole) if n in picks or i == result.knee]
    info = query.trial_summaries([result.ids[i] for i in front], storage=storage)
    shown = "" if len(front) == len(whole) else f", {len(front)} shown (--limit 0 for all)"
    table = Table(title=f"Pareto front: {len(whole)} of {len(result.values)} complete trials "
                        f"({', '.join(map(str, objs))}){shown}")
    for c in ["id", "study", "#", *[_header(o.name) for o in objs], "blocks", "depths",
              "widths", ""]:
        table.add_column(c, justify="right" if c in ("id", "#") or "(" in c else "left")
    for i in front:
        s = info.get(result.ids[i])
        cells = [str(result.ids[i]), result.groups[i],
                 "-" if s is None or s.number is None else str(s.number)]
        cells += [_fmt(o.name, float(v)) for o, v in zip(objs, result.values[i])]
        cells += [s.blocks or "-", s.depths or "-", s.widths or "-"] if s else ["-"] * 3
        cells.append("knee" if i == result.knee else "")
        table.add_row(*cells)
    con = _console()
    con.print(table)
    ref = ", ".join(f"{o.name} {format_value(o.name, v)}"
                    for o, v in zip(objs, result.reference_values))
    con.print(f"Hypervolume {result.hypervolume:.6g} "
              f"(normalised {result.hypervolume_normalised:.4f}); reference point: {ref}")
    if len(result.group_hypervolumes) > 1:
        for g, hv in result.group_hypervolumes.items():
            con.print(f"  study {g}: hypervolume {hv:.6g} (same reference point)")
    if result.knee is not None:
        k = result.knee
        vals = ", ".join(f"{o.name} {format_value(o.name, float(v))}"
                         for o, v in zip(objs, result.values[k]))
        con.print(f"Knee: trial {result.ids[k]} ({vals})")
    for p in result.references:
        vals = ", ".join(f"{k} {format_value(k, v)}" for k, v in p.values.items())
        con.print(f"Preset {p.name}: {vals}" + (f" ({p.note})" if p.note else ""))


COMMANDS = [studies_cmd, trials_group, pareto_cmd]
