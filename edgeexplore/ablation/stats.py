"""Small statistics for ablation tables: mean ± std, paired t-test and sign test over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as _scipy_stats


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0 for a single value."""
    n = len(xs)
    if n < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))


def t_sf_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return float("nan")
    return float(2.0 * _scipy_stats.t.sf(abs(t), df))


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of a variant with the baseline over the same seeds."""

    n: int
    mean_diff: float
    std_diff: float
    t: float
    p: float  # two-sided paired t-test (nan when n < 2)
    wins: int  # seeds where the variant beat the baseline
    losses: int
    sign_p: float  # two-sided exact sign test (ties dropped)

    def holds(self, alpha: float = 0.05) -> bool:
        """The difference is significant at ``alpha`` by the paired t-test."""
        return self.n >= 2 and not math.isnan(self.p) and self.p < alpha

    def consistent(self) -> bool:
        """Every seed moved the same way (the weaker, assumption-free reading)."""
        return self.n >= 1 and (self.wins == self.n or self.losses == self.n)

    def to_dict(self) -> dict[str, float | int | None]:
        def clean(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {
            "n": self.n,
            "mean_diff": self.mean_diff,
            "std_diff": self.std_diff,
            "t": clean(self.t) if not math.isinf(self.t) else (1e308 if self.t > 0 else -1e308),
            "p": clean(self.p),
            "wins": self.wins,
            "losses": self.losses,
            "sign_p": clean(self.sign_p),
        }


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial sign test (ties already dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    return float(_scipy_stats.binomtest(k, n, 0.5).pvalue)


def paired_test(variant: Sequence[float], baseline: Sequence[float]) -> PairedTest:
    """Paired t-test of ``variant - baseline`` over matched seeds (the same index = same seed)."""
    if len(variant) != len(baseline):
        raise ValueError("paired samples must have the same length")
    diffs = [a - b for a, b in zip(variant, baseline)]
    n = len(diffs)
    if n == 0:
        nan = float("nan")
        return PairedTest(0, nan, nan, nan, nan, 0, 0, 1.0)
    md, sd = mean(diffs), std(diffs)
    wins = sum(d > 0 for d in diffs)
    losses = sum(d < 0 for d in diffs)
    if n < 2:
        t = p = float("nan")
    elif sd <= 1e-9 * max(1.0, abs(md)):
        # Every seed moved by the same amount (common with few seeds and a small validation set,
        # where accuracies are multiples of 1/N; float rounding leaves a std of ~1e-17, which
        # would give t ~ 1e16 and p = 0): the t statistic says nothing, so fall back to the
        # exact sign test, which needs no variance.
        t = 0.0 if md == 0 else math.copysign(math.inf, md)
        p = 1.0 if md == 0 else sign_test(wins, losses)
    else:
        t = md / (sd / math.sqrt(n))
        p = t_sf_two_sided(t, n - 1)
    return PairedTest(n, md, sd, t, p, wins, losses, sign_test(wins, losses))
