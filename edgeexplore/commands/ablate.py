"""``edgeexplore ablate``: the EdgeViT paper's ablation protocol (thin wrapper over
:mod:`edgeexplore.ablation`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..ablation import (
    FORMATS,
    AblationSettings,
    format_flops,
    load_report,
    plan_ablation,
    run_ablation,
)
from ..ablation.runner import DEFAULT_DATA, QUICK
from ..errors import ConfigError, EdgeExploreError
from ..tabular import to_csv
from .options import console as _console
from .options import storage_option

_EXT_FORMATS = {".csv": "csv", ".json": "json", ".md": "markdown", ".markdown": "markdown"}


def _tolerance(value: str) -> float:
    text = value.strip()
    try:
        tol = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise ConfigError(f"--tolerance {value!r} is not a number like 0.03 or 3%") from None
    if not 0 < tol < 1:
        raise ConfigError(f"--tolerance must be between 0 and 1 (e.g. 0.03 or 3%), not {value}")
    return tol


def _num_classes(spec: str) -> int | None:
    """The class count of a data spec without loading it where that is cheap."""
    from ..data import SYNTHETIC_DEFAULTS, load_data, parse_spec

    kind, _, options = parse_spec(spec)
    if kind == "synthetic":
        return int(options.get("classes", SYNTHETIC_DEFAULTS["classes"]))
    if kind == "cifar10":
        return 10
    return load_data(spec).num_classes


COMPONENT_HELP = (
    "COMPONENT is one of: local-agg (LocalAgg vs none=PVT SRA vs LSA), sampler (pick vs centre "
    "vs avg vs max), local-prop (deconv vs bilinear vs nearest vs none=SRA), global-attn (LGL vs "
    "conv-only), block (every registered block kind), or a YAML file of variants "
    "(see studies/ablations/example.yaml)."
)


@click.command("ablate", epilog=COMPONENT_HELP)
@click.argument("component", metavar="COMPONENT")
@click.option(
    "--base",
    default=None,
    metavar="PRESET|CONFIG",
    help="Base architecture: a preset or a JSON config (default edgevit_xxs; "
    "--quick: a tiny EdgeViT).",
)
@click.option(
    "--flops-target",
    default=None,
    metavar="FLOPS",
    help="FLOPs budget every variant is matched to, e.g. 0.5G or 500M (default: 0.5G "
    "scaled by pixel count to --resolution, as in the paper at 224).",
)
@click.option(
    "--tolerance",
    default="3%",
    show_default=True,
    help="How close to the budget each variant must land (0.03 or 3%).",
)
@click.option(
    "--resolution",
    default=None,
    metavar="R|HxW",
    help="Input resolution for matching, timing and training (default 224; quick 64).",
)
@click.option(
    "--seeds",
    type=click.IntRange(1),
    default=None,
    help="Seeds per variant: 3 → seeds 0,1,2 (default 3; quick 2).",
)
@click.option(
    "--data",
    default=None,
    metavar="SPEC",
    help=f"Training data: synthetic, cifar10, folder:PATH (default {DEFAULT_DATA}).",
)
@click.option("--subset", type=click.IntRange(1), default=None, help="Training images per class.")
@click.option(
    "--val-subset", type=click.IntRange(1), default=None, help="Validation images per class."
)
@click.option(
    "--epochs",
    type=click.IntRange(1),
    default=None,
    help="Proxy-training epochs (default: the proxy recipe's; quick 6).",
)
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Training batch size.")
@click.option("--lr", type=float, default=None, help="Peak learning rate.")
@click.option(
    "--backend",
    default=None,
    metavar="NAME",
    help="Latency backend (default torch-cpu; 'none' skips timing).",
)
@click.option(
    "--name",
    default=None,
    help="Ablation name in the store (default: COMPONENT plus a settings digest).",
)
@storage_option()
@click.option(
    "--quick",
    is_flag=True,
    help="Tiny setting: tiny EdgeViT at 64x64, 6 MFLOPs budget, built-in synthetic "
    "data (2000/500 images), 6 epochs, 2 seeds: a few minutes on 2 CPU cores.",
)
@click.option(
    "--match-only",
    is_flag=True,
    help="Only match the variants to the budget and show the adjustments; no training.",
)
@click.option(
    "--no-widths",
    is_flag=True,
    help="Match by depth only (error if depths alone cannot reach the budget).",
)
@click.option(
    "--ablated-depths-only",
    is_flag=True,
    help="Change depths only in the stages the variants change (the paper scales the ablated "
    "stages); by default any stage's depth may change.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output: a rich table (default), csv, json or markdown.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the table to FILE (format from --format or the extension).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Training progress bars (default: when stderr is a terminal).",
)
def ablate(
    component,
    base,
    flops_target,
    tolerance,
    resolution,
    seeds,
    data,
    subset,
    val_subset,
    epochs,
    batch_size,
    lr,
    backend,
    name,
    storage,
    quick,
    match_only,
    no_widths,
    ablated_depths_only,
    fmt,
    output,
    progress,
):
    """Ablate one component of the EdgeViT block at a matched FLOPs budget.

    Every variant is changed in the stages with sample rate > 1 (stages 1-3 of EdgeViT, as in
    the paper), its depths (and widths where depths cannot get there) are adjusted until its
    FLOPs are within the tolerance of the budget, its latency is measured, and it is trained
    with the same proxy recipe and seeds. Results go to the store as an ablation linked to its
    runs: running the same command again reuses finished runs, and an interrupted ablation
    resumes where it stopped. The table gives params, FLOPs, latency, top-1 mean ± std over
    seeds, the difference from the baseline and a paired t-test over seeds.
    """
    if name is not None:  # stored as study "ablation:NAME": the rule of study names
        from ..study_summary import check_study_name

        check_study_name(name)
    if base is not None:  # the same: a wrong base is said before any work
        from ..config import resolve_arch

        resolve_arch(base)
    if flops_target is not None:  # refused now, not after loading the data and opening the store
        from ..ablation import parse_flops

        parse_flops(flops_target)
    recipe = {}
    if batch_size is not None:
        recipe["batch_size"] = batch_size
    if lr is not None:
        recipe["lr"] = lr
    settings = AblationSettings(
        component=component,
        base=base,
        flops_target=flops_target,
        tolerance=_tolerance(tolerance),
        resolution=resolution,
        seeds=seeds,
        data=data,
        subset=subset,
        val_subset=val_subset,
        epochs=epochs,
        recipe=recipe,
        backend=backend,
        name=name,
        storage=storage,
        quick=quick,
        allow_widths=not no_widths,
        ablated_depths_only=ablated_depths_only,
    )
    err = _console(stderr=True)
    if output is not None:
        _check_output_folder(output)
    if match_only:
        spec = data or (QUICK["data"] if quick else DEFAULT_DATA)
        plan = plan_ablation(settings, num_classes=_num_classes(spec))
        _show_plan(plan, fmt, output)
        return
    if fmt is None and output is not None:
        fmt = _EXT_FORMATS.get(output.suffix.lower(), "table")
    if output is not None and fmt in (None, "table"):  # said before training, not after it
        raise ConfigError(
            f"--output {output}: give --format csv, json or markdown (or a .csv/.json/.md name)"
        )
    if backend not in (None, "none", ""):  # refused now, not as "latency not measured" after training
        from ..latency import check_backend

        check_backend(backend)
    from ..store import db

    db.check_writable(db.normalise_url(storage))  # a read-only store: refused before matching
    show_progress = sys.stderr.isatty() if progress is None else progress
    report = run_ablation(
        settings, echo=lambda m: err.print(m, markup=False, soft_wrap=True), progress=show_progress
    )
    if output is not None:
        _write(output, report.format(fmt))
        err.print(f"Wrote {output}", markup=False)
    if fmt in (None, "table") or output is not None:
        report.render(_console())
    else:
        click.echo(report.format(fmt), nl=False)


def _check_output_folder(output: Path) -> None:
    """Refuse an --output that could not be written before the ablation runs, not after."""
    folder = output.expanduser().resolve().parent
    if not folder.is_dir():
        raise ConfigError(f"--output {output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"--output {output}: folder {folder} is not writable")


def _write(output: Path, text: str) -> None:
    try:
        output.write_text(text)
    except OSError as e:
        raise EdgeExploreError(f"cannot write {output}: {e.strerror}") from None


def _show_plan(plan, fmt, output) -> None:
    rows = []
    for pv in plan.variants:
        m = pv.match
        rows.append(
            {
                "variant": pv.variant.name
                + (" *" if pv.variant is plan.component.baseline else ""),
                "adjustment": m.adjustment(),
                "flops": m.flops,
                "rel_error": round(m.rel_error, 5),
                "params": m.params,
            }
        )
    if fmt in ("json", "csv", "markdown") or output is not None:
        import json

        fmt = fmt or _EXT_FORMATS.get(output.suffix.lower(), "json")
        if fmt == "json":
            text = (
                json.dumps(
                    {
                        "target": plan.target,
                        "tolerance": plan.tolerance,
                        "resolution": list(plan.resolution),
                        "variants": rows,
                    },
                    indent=2,
                    ensure_ascii=False,
                )
                + "\n"
            )
        elif fmt == "csv":
            text = to_csv(rows)
        else:
            text = (
                "| variant | adjustment | FLOPs (G) | vs target | params (M) |\n"
                "|---|---|---:|---:|---:|\n"
            )
            text += "".join(
                f"| {r['variant']} | {r['adjustment']} | {r['flops'] / 1e9:.4f} | "
                f"{r['rel_error']:+.2%} | {r['params'] / 1e6:.3f} |\n"
                for r in rows
            )
        if output is not None:
            _write(output, text)
        else:
            click.echo(text, nl=False)
        return
    from rich.table import Table

    h, w = plan.resolution
    table = Table(
        title=f"{plan.component.name}: matched to {format_flops(plan.target)} FLOPs "
        f"±{plan.tolerance:.0%} at {h}x{w}",
        title_justify="left",
    )
    for c in ("variant", "adjustment", "FLOPs (G)", "vs target", "params (M)"):
        table.add_column(c, justify="left" if c in ("variant", "adjustment") else "right")
    for r in rows:
        table.add_row(
            r["variant"],
            r["adjustment"],
            f"{r['flops'] / 1e9:.4f}",
            f"{r['rel_error']:+.2%}",
            f"{r['params'] / 1e6:.3f}",
        )
    _console().print(table)


@click.command("ablation-show")
@click.argument("name")
@storage_option()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def ablation_show(name, storage, fmt):
    """Print the table of a stored ablation NAME (no training)."""
    report = load_report(name, storage)
    if fmt == "table":
        report.render(_console())
    else:
        click.echo(report.format(fmt), nl=False)


COMMANDS = [ablate, ablation_show]
