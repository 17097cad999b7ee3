"""How stored values read to a person: one rule for counts, one label and unit per metric.

The unit is chosen from the value (K, M, G, T for 10^3 .. 10^12) and three significant digits
are kept, so a 5.6 MFLOPs proxy network and a 1.9 GFLOPs preset both read naturally instead of
"0.006 G" or "1921.4 M". Machine-readable output (CSV, JSON) keeps the exact integer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

_STEPS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))
#: stored counts, shown with the unit their size calls for
COUNTS = ("flops", "params", "activations")

#: how a stored metric is shown: label, unit, factor from stored value to displayed value (plots
#: keep the fixed unit on an axis; text uses format_value, where counts follow COUNTS' rule)
DISPLAY: dict[str, tuple[str, str, float]] = {
    "accuracy": ("Top-1 accuracy", "%", 100.0),
    "full_accuracy": ("Full-training top-1", "%", 100.0),
    "latency_ms": ("Latency", "ms", 1.0),
    "latency_p90_ms": ("Latency p90", "ms", 1.0),
    "flops": ("FLOPs", "G", 1e-9),
    "params": ("Parameters", "M", 1e-6),
    "activations": ("Activations", "M", 1e-6),
    "energy_mj": ("Energy per inference", "mJ", 1.0),
    "images_per_second": ("Training throughput", "img/s", 1.0),
    "train_seconds": ("Training time", "s", 1.0),
}


def display(name: str) -> tuple[str, str, float]:
    """(label, unit, scale) for an objective; unknown names are shown as stored."""
    return DISPLAY.get(name, (name, "", 1.0))


def human_count(value: float | None) -> str:
    """``5_612_345`` → ``'5.61 M'``; ``980`` → ``'980'``; None → ``'-'``."""
    if value is None:
        return "-"
    for step, suffix in _STEPS:
        # rounding first keeps 999_999 from printing as "1e+03 K"
        if abs(float(f"{value:.3g}")) >= step:
            return f"{value / step:.3g} {suffix}"
    return f"{value:.3g}"


def format_value(name: str, value: float | None) -> str:
    """A stored value in display units, e.g. accuracy 0.7123 → '71.23 %', flops → '5.61 M'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if name in COUNTS:
        return human_count(value)
    _, unit, scale = display(name)
    v = value * scale
    text = f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3g}"
    return f"{text} {unit}".strip()


def format_values(values: Mapping[str, float | None]) -> str:
    """Named stored values in display units: ``accuracy 71.23 %, latency_ms 4.10 ms``."""
    return ", ".join(f"{k} {format_value(k, v)}" for k, v in values.items())


def duration(seconds: float) -> str:
    """``45`` → ``'45s'``, ``187`` → ``'3m07s'``, ``5400`` → ``'1h30m'``: as ``--budget`` reads it."""
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"
