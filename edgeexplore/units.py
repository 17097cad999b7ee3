"""How counts (FLOPs, parameters, activations) read to a person: one rule everywhere.

The unit is chosen from the value (K, M, G, T for 10^3 .. 10^12) and three significant digits
are kept, so a 5.6 MFLOPs proxy network and a 1.9 GFLOPs preset both read naturally instead of
"0.006 G" or "1921.4 M". Machine-readable output (CSV, JSON) keeps the exact integer.
"""

from __future__ import annotations

_STEPS = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K"))


def human_count(value: float | None) -> str:
    """``5_612_345`` → ``'5.61 M'``; ``980`` → ``'980'``; None → ``'-'``."""
    if value is None:
        return "-"
    for step, suffix in _STEPS:
        # rounding first keeps 999_999 from printing as "1e+03 K"
        if abs(float(f"{value:.3g}")) >= step:
            return f"{value / step:.3g} {suffix}"
    return f"{value:.3g}"
