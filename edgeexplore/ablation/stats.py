"""Small statistics for ablation tables: mean ± std, paired t-test and sign test over seeds.

scipy is not a dependency, so the Student-t distribution is computed here from the regularised
incomplete beta function (continued fraction, as in Numerical Recipes §6.4); it agrees with
scipy.stats.t to ~1e-12, which is plenty for p-values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0 for a single value."""
    n = len(xs)
    if n < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    # The continued fraction converges fast only on one side of the mean; use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    if math.isnan(t):
        return float("nan")
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * t_sf_two_sided(t, df)
    return 1.0 - tail if t >= 0 else tail


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
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


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
    elif sd == 0.0:
        # Every seed moved by exactly the same amount (common with few seeds and a small
        # validation set, where accuracies are multiples of 1/N): the t statistic is infinite and
        # says nothing, so fall back to the exact sign test, which needs no variance.
        t = 0.0 if md == 0 else math.copysign(math.inf, md)
        p = 1.0 if md == 0 else sign_test(wins, losses)
    else:
        t = md / (sd / math.sqrt(n))
        p = t_sf_two_sided(t, n - 1)
    return PairedTest(n, md, sd, t, p, wins, losses, sign_test(wins, losses))
