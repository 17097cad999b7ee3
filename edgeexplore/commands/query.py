"""``edgeexplore studies``, ``trials list|show|export|curves`` and ``pareto``: reading the store
(``studies delete|rename`` live in :mod:`.studies`, ``trials curves`` in :mod:`.curves`).

Thin wrappers over :mod:`edgeexplore.analysis.query`; every listing prints as a table, CSV or JSON.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.text import Text

from ..analysis import query
from ..analysis.figures import plot_path as plot_file
from ..analysis.pareto import ParetoResult, spread
from ..errors import EdgeExploreError
from ..evaluation import place_presets
from ..tabular import json_text
from ..units import DISPLAY, format_value, format_values
from .curves import curves_cmd
from .options import console, format_option, limit_option, storage_option
from .output import Column, cell_text, emit, metric_text
from .rerun import rerun_cmd
from .studies import delete_cmd, rename_cmd

# -- studies ------------------------------------------------------------------------------------

STUDY_COLUMNS = [
    Column("name", "study"), Column("trials", right=True),
    Column("states", "by state", lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items()))),
    Column("objectives"), Column("best", show=format_values), Column("first_trial", "first trial"),
    Column("last_trial", "last trial"),
]


@click.group("studies", invoke_without_command=True)
@storage_option()
@format_option()
@click.pass_context
def studies_cmd(ctx: click.Context, storage: str | None, fmt: str) -> None:
    """List the studies in the store: trials by state, objectives and best values.

    `studies delete NAME` and `studies rename OLD NEW` change one study (each asks first;
    --yes does not).
    """
    if ctx.invoked_subcommand is not None:
        return
    studies = query.list_studies(storage=storage)
    emit([asdict(s) for s in studies], fmt, STUDY_COLUMNS, title="Studies",
         empty="The store holds no trials yet (run `edgeexplore search`).")


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


TRIAL_COLUMNS = [
    Column("id", right=True), Column("study"), Column("number", "#", right=True),
    Column("state"), *map(Column.metric, ("accuracy", "full_accuracy", "latency_ms")),
    Column("latency_source", "latency", lambda v: v or "-"),
    *map(Column.metric, ("flops", "params", "energy_mj")), Column("backend"),
    Column("resolution"), Column("arch_hash", "architecture"), Column("blocks"),
    Column("depths"), Column("widths"),
]


@trials_group.command("list")
@_study
@_where
@_sort
@limit_option(what="trials")
@format_option()
@storage_option()
def trials_list(studies: tuple[str, ...], where: str | None, sort: str | None,
                limit: int | None, fmt: str, storage: str | None) -> None:
    """List trials (optionally filtered and sorted)."""
    rows = query.list_trials(study=list(studies) or None, where=where, sort=sort, limit=limit,
                             storage=storage)
    emit([asdict(r) for r in rows], fmt, TRIAL_COLUMNS,
         title=f"{len(rows)} trial{'s' if len(rows) != 1 else ''}", empty="No trials match.")


STAGE_COLUMNS = [Column(k) for k in ("stage", "block", "depth", "width", "heads", "mlp_ratio",
                                        "sample_rate")] + [
    Column("options", show=lambda o: ", ".join(f"{k}={v}" for k, v in sorted((o or {}).items()))
           or "-")]


@trials_group.command("show")
@click.argument("trial_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--save-config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the trial's architecture as an ArchConfig JSON file (for "
                   "`measure FILE`, `ArchConfig.load`, training it in full).")
@storage_option()
def trials_show(trial_id: int, fmt: str, save_config: Path | None, storage: str | None) -> None:
    """Everything stored about one trial: stages, metrics, latency, curve, environment."""
    t = query.get_trial(trial_id, storage=storage)
    if save_config is not None:
        from ..store import db

        db.refuse_overwriting(save_config, storage)
        _save_config(t, save_config)
        # on stderr, so `--format json` output stays one JSON document
        click.echo(f"Saved the architecture of trial {t.id} to {save_config}.", err=True)
    if fmt == "json":
        click.echo(json_text(asdict(t)), nl=False)
        return
    _print_trial(t)


def _print_trial(t: query.TrialDetail) -> None:
    from .output import table

    con = console()
    con.print(Text.assemble((f"Trial {t.id}", "bold"), f"  study {t.study}  #{t.number}  state ",
                            (t.state, "bold"), f"  seed {t.seed}  architecture "
                            f"{t.arch_hash or '-'}"))
    if t.reason:
        con.print(f"reason: {t.reason}")
    if t.reused_from:
        con.print(f"training results reused from trial {t.reused_from}")
    if t.stages:
        con.print(table(t.stages, STAGE_COLUMNS,
                        f"Configuration ({t.resolution or '-'} input, "
                        f"{(t.config or {}).get('num_classes', '-')} classes)"))
    metrics = []
    shown = {**t.metrics, **{k: v for k, v in t.cost.items() if k != "per_stage_flops"}}
    for k, v in _flatten(shown).items():
        if k == "latency.device":
            continue  # the latency table below names the device
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        metrics.append({"metric": k, "value": format_value(k, v) if number and k in DISPLAY
                        else cell_text(v)})
    if t.cost.get("per_stage_flops"):
        per = ", ".join(f"{k} {metric_text('flops', v)}"
                        for k, v in t.cost["per_stage_flops"].items())
        metrics.append({"metric": "FLOPs per stage", "value": per})
    metrics += [{"metric": k.replace("_", " "), "value": f"{v:.2f}"}
                for k, v in t.timings.items() if v is not None]
    con.print(table(metrics, [Column("metric"), Column("value")], "Metrics"))
    settings = json.dumps(t.backend_settings) if t.backend_settings else ""
    con.print(f"backend {t.backend or '-'} {settings}   data {t.data or '-'}")
    if t.latency_source:
        con.print(_latency_source_text(t.latency_source))
    if t.latency:
        keys = [k for k in query.LATENCY_COLUMNS if any(k in m for m in t.latency)]
        con.print(table(t.latency, [Column(k) for k in keys],
                        "Latency measurements of this architecture (ms)"))
    if t.curve:
        keys = list(dict.fromkeys(k for e in t.curve for k in e))
        con.print(table(t.curve, [Column(k, right=True) for k in keys], "Training curve"))
    if t.trainings:
        con.print(table(t.trainings, [Column(k) for k in query.TRAINING_COLUMNS],
                        "Longer trainings of this architecture (top-1/top-5 as fractions)"))
    if t.recipe:
        con.print("recipe: " + ", ".join(f"{k}={v}" for k, v in t.recipe.items()))
    if t.environment:
        con.print("environment: " + ", ".join(f"{k}={v}" for k, v in t.environment.items()
                                                if v is not None))


def _latency_source_text(src: dict[str, Any]) -> str:
    """``latency measured`` / ``latency predicted``, and the prediction with its error."""
    line = f"latency {src['source']}"
    if src.get("predicted_ms") is None:
        return line
    return (f"{line}; predicted {src['predicted_ms']:.3f} ms by the learned predictor "
            f"({src['predictor_method']}, {src['predictor_n']} measured architectures), "
            f"cross-validated error: worst {src['predictor_error']:.1%}, MAPE "
            f"{src['predictor_mape']:.1%}, within 10% {src['predictor_within10']:.0%}")


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


@trials_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True, help="Every stored column, so no table form: csv or json.")
@click.option("--output", "-o", default=None, metavar="FILE", help="Write here (default: stdout).")
@_study
@_where
@_sort
@limit_option(what="trials")
@storage_option()
def trials_export(fmt: str, output: str | None, studies: tuple[str, ...], where: str | None,
                  sort: str | None, limit: int | None, storage: str | None) -> None:
    """Export every stored column of the trials (and their architecture) as CSV or JSON."""
    text = query.export_trials(format=fmt, output=output, study=list(studies) or None,
                               where=where, sort=sort, limit=limit, storage=storage)
    if output is None:
        click.echo(text, nl=False)
    else:
        # a cell may hold a newline (a multi-line failure reason): count records, not lines
        n = len(json.loads(text)) if fmt == "json" else sum(1 for _ in csv.reader(io.StringIO(
            text))) - 1
        click.echo(f"Wrote {n} trials to {output}.", err=True)


trials_group.add_command(curves_cmd)
trials_group.add_command(rerun_cmd)
studies_cmd.add_command(delete_cmd)
studies_cmd.add_command(rename_cmd)


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
@click.option("--noise", default=None, metavar="LIST",
              help="Seed-to-seed spread per objective, e.g. accuracy=0.012 (a bare number is "
                   "accuracy's): front members another trial matches within it are marked.")
@limit_option(default=40, what="rows of the front in the table (spread along it, knee "
                              "included; csv and json always have the whole front)")
@format_option()
@storage_option()
def pareto_cmd(studies: tuple[str, ...], objectives: str | None, backend: str | None,
               where: str | None, plot_path: str | None, presets: bool, train_presets: bool,
               noise: str | None, limit: int, fmt: str, storage: str | None) -> None:
    """The non-dominated trials, their hypervolume and knee point, and a trade-off plot.

    Membership is Optuna's own non-domination test; the hypervolume's reference point is, per
    objective, the worst observed value plus 10% of the observed range; the knee is the front
    point farthest from the line (plane) through the front's extremes in normalised space.

    csv lists the front, one trial a row; json is the whole analysis (front with the same
    columns, knee, hypervolume, reference point, presets).
    """
    if plot_path:
        plot_file(plot_path)  # a wrong name fails now, not after measuring the presets
    noise_of = _parse_noise(noise) if noise else None
    result = query.pareto_front(
        study=list(studies) or None, objectives=objectives, backend=backend, where=where,
        presets=presets, storage=storage,
    )
    if noise_of:
        names = [o.name for o in result.objectives]
        unknown = sorted(set(noise_of) - set(names))
        if unknown:
            raise click.BadParameter(f"{unknown[0]!r} is not an objective here (objectives: "
                                     f"{', '.join(names)})", param_hint="--noise")
    place_presets(result.preset_requests, train=train_presets, storage=storage)
    if noise_of:
        from ..analysis.pareto import within_noise

        result.noisy = within_noise(result.values, result.objectives, result.on_front, noise_of)
    if plot_path:
        from ..analysis.pareto import plot

        title = "Pareto front: " + ", ".join(studies or sorted(set(result.groups)))
        if backend:
            title += f" ({backend})"
        plot(result, plot_path, title=title)
    shown = result.front if fmt != "table" else _spread(result, limit)
    rows = _front_rows(result, shown, storage)
    if fmt == "json":
        doc = result.to_dict()
        doc["front"] = rows
        click.echo(json_text(doc), nl=False)
    elif fmt == "csv":
        emit(rows, fmt, _front_columns(result))
    else:
        _print_front(result, rows)
    if plot_path:
        click.echo(f"Plot written to {plot_path}.", err=True)


def _parse_noise(text: str) -> dict[str, float]:
    """``accuracy=0.012,latency_ms=0.05`` or a bare ``0.012`` (accuracy's spread)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not NAME=NUMBER", param_hint="--noise") from None
        if not math.isfinite(number) or number < 0:
            raise click.BadParameter(f"{part!r}: a spread is a finite number, 0 or more",
                                     param_hint="--noise")
        out[name.strip() or "accuracy"] = number
    return out


def _spread(result: ParetoResult, limit: int) -> list[int]:
    """At most ``limit`` front rows spread along the front (its ends and the knee included)
    rather than one end cut off; 0 keeps them all."""
    whole = result.front
    if not 0 < limit < len(whole):
        return whole
    chosen = {*spread(whole, limit), result.knee}
    return [i for i in whole if i in chosen]


def _front_columns(result: ParetoResult) -> list[Column]:
    return [Column("id", right=True), Column("study"), Column("number", "#", right=True),
            *(Column.metric(o.name) for o in result.objectives),
            Column("blocks"), Column("depths"), Column("widths"),
            Column("knee", "", lambda k: "knee" if k else ""),
            *([Column("within_noise", "noise", lambda k: "within noise" if k else "")]
              if result.noisy is not None else [])]


def _front_rows(result: ParetoResult, indices: list[int], storage: str | None
                ) -> list[dict[str, Any]]:
    info = query.trial_summaries([result.ids[i] for i in indices], storage=storage)
    rows = []
    for i in indices:
        s = info.get(result.ids[i])
        row: dict[str, Any] = {"id": result.ids[i], "study": result.groups[i],
                               "number": s.number if s else None}
        row.update({o.name: float(v) for o, v in zip(result.objectives, result.values[i])})
        row.update({k: getattr(s, k) if s else None for k in ("blocks", "depths", "widths")})
        row["knee"] = i == result.knee
        if result.noisy is not None:
            row["within_noise"] = bool(result.noisy[i])
        rows.append(row)
    return rows


def _print_front(result: ParetoResult, rows: list[dict[str, Any]]) -> None:
    from .output import table

    objs = result.objectives
    whole = result.front
    shown = "" if len(rows) == len(whole) else f", {len(rows)} shown (--limit 0 for all)"
    con = console()
    con.print(table(rows, _front_columns(result),
                    f"Pareto front: {len(whole)} of {len(result.values)} complete trials "
                    f"({', '.join(map(str, objs))}){shown}"))
    ref = format_values(dict(zip([o.name for o in objs], result.reference_values)))
    if result.left_out:
        con.print(f"{result.left_out} complete trial{'s' if result.left_out != 1 else ''} "
                  f"left out: no value for {' or '.join(o.name for o in objs)}")
    if result.predicted:
        con.print(f"{result.predicted} complete trial{'s' if result.predicted != 1 else ''} "
                  "left out: latency predicted, not measured (the front is made of measured "
                  "latencies)")
    con.print(f"Hypervolume {result.hypervolume:.6g} "
              f"(normalised {result.hypervolume_normalised:.4f}); reference point: {ref}")
    if len(result.group_hypervolumes) > 1:
        groups = np.array(result.groups, dtype=object)
        for g, hv in result.group_hypervolumes.items():
            own = result.group_front(g)
            on_joint = sum(bool(result.on_front[i]) for i in own)
            con.print(f"  study {g}: {len(own)} of {int((groups == g).sum())} trials on its own "
                      f"front ({on_joint} on the joint front), hypervolume {hv:.6g} "
                      "(same reference point)")
    if result.knee is not None:
        k = result.knee
        vals = format_values({o.name: float(v) for o, v in zip(objs, result.values[k])})
        con.print(f"Knee: trial {result.ids[k]} ({vals})")
    for p in result.references:
        vals = format_values(p.values)
        con.print(f"Preset {p.name}: {vals}" + (f" ({p.note})" if p.note else ""))


COMMANDS = [studies_cmd, trials_group, pareto_cmd]
