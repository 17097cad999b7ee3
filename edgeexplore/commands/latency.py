"""``edgeexplore measure`` (cost and latency of one architecture) and ``edgeexplore backends``.

Thin wrappers over :func:`edgeexplore.cost.count_cost` and :mod:`edgeexplore.latency`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import EdgeExploreError
from ..tabular import json_text, to_csv
from ..units import human_count
from .options import console as _console
from .options import format_option, json_alias, storage_option
from .output import Column, emit


def parse_settings(items: tuple[str, ...], backend: str | None = None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is read as JSON when it parses (numbers, lists, true), else
    kept as text (so ``--set command='ssh board bench {model}'`` is a string the backend splits).
    A text setting of ``backend`` keeps a scalar as typed: ``--set command=false`` runs `false`."""
    from ..latency.registry import text_settings

    texts = text_settings(backend) if items and backend else set()
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise EdgeExploreError(f"--set expects KEY=VALUE, not {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out[key] = value if key in texts and not isinstance(parsed, (list, dict)) else parsed
    return out


def _ms(v: float) -> str:
    return f"{v:.3f}"


def _measured_rows(m: Any) -> list[tuple[str, str]]:
    return [
        ("median (ms)", _ms(m.median_ms)), ("mean (ms)", _ms(m.mean_ms)),
        ("p10 (ms)", _ms(m.p10_ms)), ("p90 (ms)", _ms(m.p90_ms)), ("IQR (ms)", _ms(m.iqr_ms)),
        ("CV", f"{m.cv:.2%}"), ("samples", str(m.count)), ("warm-up runs", str(m.warmup)),
        ("threads", str(m.threads)), ("per image (ms)", _ms(m.per_item_ms)),
        ("clock", str(m.extra.get("clock", "-"))), ("stopped", m.stop_reason),
        ("cached", "yes" if m.cached else "no"), ("measuring took (s)", f"{m.wall_s:.2f}"),
    ]


def _latency_table(m: Any):
    from rich.table import Table

    shape = "x".join(map(str, m.input_shape))
    t = Table(title=f"Latency: {m.backend}, batch {m.batch}, input {shape}")
    t.add_column("statistic")
    t.add_column("value", justify="right")
    if m.stop_reason == "predicted":  # one predicted value: its spread would be meaningless
        rows = [("predicted (ms)", _ms(m.median_ms)), ("threads", str(m.threads)),
                ("predicting took (s)", f"{m.wall_s:.2f}")]
    else:
        rows = _measured_rows(m)
    if m.backend == "lut":
        err = m.extra.get("error", {})
        rows += [("unit sum (ms)", _ms(m.extra["unit_sum_ms"])),
                 ("constant (ms)", _ms(m.extra["constant_ms"])),
                 ("units (distinct, timed now)",
                  (f"{m.extra['units']} ({m.extra['distinct_units']}, "
                   f"{m.extra['units_timed_now']})"))]
        if err.get("n"):
            rows.append((f"error vs {m.settings.get('base')} ({err['method']}, n={err['n']})",
                         f"MAPE {err['mape']:.1%}, max {err['max_ape']:.1%}"))
        if m.extra.get("measured_ms") is not None:
            rows.append(("measured (ms)", _ms(m.extra["measured_ms"])))
    if m.energy_j:
        e = m.energy_j
        rows += [("energy median (mJ)", f"{e['median_j'] * 1e3:.3f}"),
                 ("energy p10-p90 (mJ)", f"{e['p10_j'] * 1e3:.3f}-{e['p90_j'] * 1e3:.3f}"),
                 ("energy CV", f"{e['cv']:.2%}"), ("energy source", e["source"])]
    else:
        rows.append(("energy", m.energy_note or "not available here"))
    dev = m.device
    rows.append(("device", str(dev.get("gpu") or dev.get("device_name") or dev.get("cpu", "?"))))
    for k, v in rows:
        t.add_row(k, v)
    return t


@click.command("measure")
@click.argument("arch", metavar="PRESET|CONFIG.json")
@click.option("--resolution", default=None, metavar="N|HxW",
              help="Input resolution (default: the config's, 224 for presets).")
@click.option("--classes", "num_classes", type=int, default=None,
              help="Number of classes (default: the config's).")
@click.option("--backend", default="torch-cpu", show_default=True,
              help="Latency backend (see `edgeexplore backends`).")
@click.option("--threads", type=int, default=None,
              help="Compute threads for CPU backends (default 1).")
@click.option("--batch", type=int, default=1, show_default=True,
              help="Batch size of the timed input.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Backend setting, repeatable: budget_s=3, clock=wall, "
                   "command='ssh board bench {model}', pattern=..., timeout_s=60.")
@click.option("--force", is_flag=True, help="Measure again even if the cache has this measurement.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the latency cache.")
@storage_option("Latency cache")
@click.option("--no-latency", is_flag=True, help="Only count parameters and FLOPs.")
@format_option()
@json_alias
def measure_cmd(arch: str, resolution: str | None, num_classes: int | None, backend: str,
                threads: int | None, batch: int, settings: tuple[str, ...], force: bool,
                no_cache: bool, storage: str | None, no_latency: bool, fmt: str) -> None:
    """Parameters, FLOPs (total and per stage) and measured latency of one architecture.

    \b
    Examples:
      edgeexplore measure edgevit_xxs
      edgeexplore measure edgevit_s --resolution 256x192 --backend onnxruntime --threads 2
      edgeexplore measure my_arch.json --backend lut --format json
      edgeexplore measure edgevit_xxs --backend command \\
          --set command='python bench.py {model} --shape {input_shape}' \\
          --set pattern='avg (\\S+) ms'

    Measurements are cached in the store keyed by architecture, input shape, batch, backend,
    settings and device, so measuring again is free; --force measures anew. json is one object;
    csv is one row with the same fields (per-stage FLOPs and the latency record as JSON text).
    """
    from ..config import resolve_arch
    from ..cost import count_cost

    cfg = resolve_arch(arch, resolution=resolution, num_classes=num_classes)
    cost = count_cost(cfg)
    m = None
    if not no_latency:
        from ..latency import check_backend, measure_arch
        from ..store import open_store

        extra = parse_settings(settings, backend)
        # a bad batch, thread count or backend is refused before the store is created
        check_backend(backend, batch=batch, threads=threads, **extra)
        status = None if fmt != "table" else _console(stderr=True).status(
            f"measuring on {backend} (batch {batch})...")
        if status is not None:
            status.start()
        try:
            m = measure_arch(cfg, backend=backend, batch=batch, threads=threads, force=force,
                             store=None if storage is None else open_store(storage),
                             cache_results=not no_cache, **extra)
        finally:
            if status is not None:
                status.stop()
    if fmt != "table":
        out = {
            "arch": arch, "hash": cfg.hash, "config": cfg.to_dict(),
            "resolution": list(cfg.resolution), "num_classes": cfg.num_classes,
            "params": cost.params, "flops": cost.flops, "activations": cost.activations,
            "per_stage_flops": cost.per_stage, "latency": m.to_dict() if m is not None else None,
        }
        text = json_text(out) if fmt == "json" else to_csv([out])
        click.echo(text, nl=False)
        return
    from rich.table import Table

    console = _console()
    h, w = cfg.resolution
    t = Table(title=f"{arch} ({cfg.hash}) at {h}x{w}, {cfg.num_classes} classes")
    t.add_column("cost")
    t.add_column("value", justify="right")
    t.add_row("parameters", f"{cost.params:,} ({human_count(cost.params)})")
    t.add_row("FLOPs", f"{cost.flops:,} ({human_count(cost.flops)})")
    for group, flops in cost.per_stage.items():
        t.add_row(f"  {group}", f"{flops:,} ({flops / max(cost.flops, 1):.1%})")
    t.add_row("activations", f"{cost.activations:,}")
    console.print(t)
    if m is not None:
        console.print(_latency_table(m))


BACKEND_COLUMNS = [Column("name", "backend"), Column("available"),
                   Column("reason", "device / reason"), Column("origin", "from")]


@click.command("backends")
@click.option("--backend", "probe", default=None, metavar="NAME",
              help="Probe this backend with the --set settings (e.g. to check a command template).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Setting for the --backend probed, repeatable.")
@format_option()
@json_alias
def backends_cmd(probe: str | None, settings: tuple[str, ...], fmt: str) -> None:
    """List every latency backend, whether it runs here, and why not (or on what device).

    Third-party packages add backends through the `edgeexplore.latency_backends` entry-point
    group; they are listed here once installed.
    """
    from ..latency import list_backends

    extra = parse_settings(settings, probe)
    if extra and probe is None:
        raise EdgeExploreError("--set needs --backend NAME: settings differ between backends")
    infos = list_backends({probe: extra} if probe else None)
    emit([vars(i) for i in infos], fmt, BACKEND_COLUMNS,
         title="Latency backends")
    probed = next((i for i in infos if i.name == probe), None)
    if probed is not None and not probed.available:  # a probe answers in its exit status too
        raise EdgeExploreError(f"backend {probe!r} cannot run here: {probed.reason}")


COMMANDS = [measure_cmd, backends_cmd]
