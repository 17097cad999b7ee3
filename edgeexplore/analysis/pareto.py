"""Pareto fronts, hypervolume, knee points and trade-off plots over stored objectives.

Everything here works on a plain ``(n_points, n_objectives)`` array of objective values plus the
objectives' directions; the store is :mod:`edgeexplore.analysis.query`'s business.

* **Front.** Optuna's own non-domination test (``optuna.study._multi_objective._is_pareto_front``,
  the function behind ``study.best_trials``) on the values turned into losses (maximised
  objectives negated), so membership is exactly what Optuna would report for the same trials.
  Optuna 5 has no public function for this on bare arrays, hence the private import (pinned by
  ``tests/test_pareto.py``, which checks against ``study.best_trials``).
* **Hypervolume.** ``optuna._hypervolume.compute_hypervolume`` (WFG; exact) in the loss space.
  Reference point: per objective, the worst value observed among the points analysed plus 10% of
  that objective's observed range (plus 10% of its magnitude, or 1, when the range is zero), so
  every point, even the worst, contributes a non-zero volume and fronts from several studies
  are compared against one box. The raw hypervolume is in the product of the objectives' units;
  ``hypervolume_normalised`` divides it by the volume of the box between the ideal point (best
  value of each objective) and the reference point, giving a share in [0, 1].
* **Knee.** Normalise the front's losses to [0, 1] per objective (0 = best on the front); take
  the hyperplane through the front's extreme points (each the best in one objective: for two
  objectives, the line between the two ends of the front) and pick the point farthest from it
  on the ideal side. When that is undefined (fewer than 3 points on the front, extremes that do
  not span a hyperplane, or a front with nothing bulging towards the ideal point) the knee is
  the point closest to the ideal point (0, ..., 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Optuna 5 has no public function for either on bare arrays (they sit behind study.best_trials
# and the hypervolume-history plot); these two imports are this package's only private Optuna
# names, used by pareto_mask and hypervolume alone and pinned by tests/test_pareto.py.
from optuna._hypervolume import compute_hypervolume
from optuna.study._multi_objective import _is_pareto_front

from ..errors import EdgeExploreError
from ..objectives import Objective
from ..units import display, format_value
from .figures import plot_path, pyplot, save

#: share of the observed range added beyond the worst value to place the reference point
REFERENCE_MARGIN = 0.10


def axis_label(obj: Objective) -> str:
    label, unit, _ = display(obj.name)
    better = "higher" if obj.direction == "max" else "lower"
    return f"{label} ({unit}), {better} is better" if unit else f"{label}, {better} is better"


def to_loss(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """Values → losses (every objective minimised)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(objectives):
        raise EdgeExploreError(
            f"expected one column per objective ({len(objectives)}), got shape {values.shape}"
        )
    return values * np.array([o.sign for o in objectives])


def pareto_mask(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """True for the non-dominated points (duplicates of a front point are on the front too)."""
    loss = to_loss(values, objectives)
    if len(loss) == 0:
        return np.zeros(0, dtype=bool)
    return _is_pareto_front(loss, assume_unique_lexsorted=False)


def reference_point(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """The hypervolume reference point, in loss space (see the module docstring)."""
    loss = to_loss(values, objectives)
    if len(loss) == 0:
        raise EdgeExploreError("no points to place a reference point from")
    worst, best = loss.max(axis=0), loss.min(axis=0)
    span = worst - best
    fallback = np.where(np.abs(worst) > 0, np.abs(worst), 1.0)
    return worst + REFERENCE_MARGIN * np.where(span > 0, span, fallback)


def hypervolume(
    values: np.ndarray, objectives: Sequence[Objective], reference: np.ndarray | None = None
) -> float:
    """Volume dominated by ``values`` up to ``reference`` (loss space; default: see above)."""
    loss = to_loss(values, objectives)
    if len(loss) == 0:
        return 0.0
    ref = reference_point(values, objectives) if reference is None else np.asarray(reference)
    inside = np.all(loss <= ref, axis=1)  # points beyond the box add nothing
    if not inside.any():
        return 0.0
    loss = loss[inside]
    front = loss[_is_pareto_front(loss, assume_unique_lexsorted=False)]
    return float(compute_hypervolume(front, ref, assume_pareto=False))


def within_noise(values: np.ndarray, objectives: Sequence[Objective], mask: np.ndarray,
                 noise: dict[str, float]) -> np.ndarray:
    """Front members another point would dominate if each objective could be off by its noise.

    ``noise`` is each objective's seed-to-seed spread (e.g. ``{"accuracy": 0.012}``; objectives
    left out are taken as exact). A marked member is on the front only by a margin the noise can
    explain: another trial is at least as good everywhere, give or take that spread, so a retrain
    with another seed may swap them.
    """
    loss = to_loss(values, objectives)
    eps = np.array([float(noise.get(o.name, 0.0)) for o in objectives])
    marked = np.zeros(len(loss), dtype=bool)
    for i in np.flatnonzero(mask):
        close = np.all(loss <= loss[i] + eps, axis=1)
        close[i] = False
        # an identical point is no evidence either way
        close &= np.any(loss != loss[i], axis=1)
        marked[i] = bool(close.any())
    return marked


def knee_index(
    values: np.ndarray, objectives: Sequence[Objective], mask: np.ndarray | None = None
) -> int | None:
    """Index (into ``values``) of the front's knee point; ``None`` when there are no points.

    ``mask`` (the :func:`pareto_mask` of ``values``) saves recomputing the front.
    """
    if len(values) == 0:
        return None
    mask = pareto_mask(values, objectives) if mask is None else mask
    idx = np.flatnonzero(mask)
    loss = to_loss(values, objectives)[idx]
    lo, hi = loss.min(axis=0), loss.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    z = (loss - lo) / span  # 0 = best on the front, 1 = worst on the front
    closest = int(idx[np.argmin(np.linalg.norm(z, axis=1))])
    k = z.shape[1]
    if len(z) < 3:
        return closest
    extremes = z[np.argmin(z, axis=0)]  # row i: the point best in objective i
    try:
        normal = np.linalg.solve(extremes, np.ones(k))  # plane {x : normal·x = 1}
    except np.linalg.LinAlgError:
        return closest
    if not np.all(np.isfinite(normal)) or np.linalg.norm(normal) == 0:
        return closest
    # The ideal point (origin) satisfies normal·0 = 0 < 1, so a positive distance lies towards it.
    dist = (1.0 - z @ normal) / np.linalg.norm(normal)
    if dist.max() <= 1e-12:
        return closest
    return int(idx[int(np.argmax(dist))])


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items evenly spaced along ``items`` (both ends included), e.g. along a front."""
    if n >= len(items):
        return list(items)
    if n <= 0:
        return []
    picks = np.unique(np.rint(np.linspace(0, len(items) - 1, n)).astype(int))
    return [items[i] for i in picks]


@dataclass
class ReferencePoint:
    """A named architecture (a preset) drawn for comparison; unknown objectives are ``None``."""

    name: str
    values: dict[str, float | None]
    note: str = ""


@dataclass
class ParetoResult:
    """The analysis of one set of points: front, hypervolume, knee, per-group hypervolumes."""

    objectives: list[Objective]
    values: np.ndarray  # (n, k) stored values
    ids: list[Any]  # e.g. trial ids, one per row
    groups: list[str]  # e.g. the study of each row
    on_front: np.ndarray  # (n,) bool
    reference: np.ndarray  # loss space
    hypervolume: float
    hypervolume_normalised: float
    knee: int | None  # row index
    group_hypervolumes: dict[str, float] = field(default_factory=dict)
    #: (n,) bool: each point on its own group's front (several studies compared side by side)
    on_group_front: np.ndarray | None = None
    references: list[ReferencePoint] = field(default_factory=list)
    #: how to measure the references no stored trial answers (analysis.query.PresetRequest)
    preset_requests: list[Any] = field(default_factory=list)
    #: complete trials left out for lacking a value of some objective (e.g. full_accuracy)
    left_out: int = 0
    #: complete trials left out because their latency was predicted, never measured
    predicted: int = 0
    #: (n,) bool: front members whose place is within noise (see :func:`within_noise`)
    noisy: np.ndarray | None = None

    @property
    def front(self) -> list[int]:
        """Row indices of the front, sorted by the first objective (best first)."""
        idx = np.flatnonzero(self.on_front)
        loss0 = to_loss(self.values[idx], self.objectives)[:, 0] if len(idx) else []
        return [int(i) for i in idx[np.argsort(loss0, kind="stable")]]

    def group_front(self, group: str) -> list[int]:
        """Row indices of ``group``'s own front, sorted by the first objective (best first)."""
        mask = self.on_front if self.on_group_front is None else self.on_group_front
        idx = np.flatnonzero(mask & (np.array(self.groups, dtype=object) == group))
        loss0 = to_loss(self.values[idx], self.objectives)[:, 0] if len(idx) else []
        return [int(i) for i in idx[np.argsort(loss0, kind="stable")]]

    @property
    def reference_values(self) -> list[float]:
        """The reference point in stored units (maximised objectives turned back)."""
        return [float(r * o.sign) for r, o in zip(self.reference, self.objectives)]

    def to_dict(self) -> dict[str, Any]:
        def row(i: int) -> dict[str, Any]:
            d = {"id": self.ids[i], "group": self.groups[i]}
            d.update({o.name: float(v) for o, v in zip(self.objectives, self.values[i])})
            return d

        return {
            "objectives": [str(o) for o in self.objectives],
            "points": len(self.values),
            "front": [row(i) for i in self.front],
            "knee": None if self.knee is None else row(self.knee),
            "hypervolume": self.hypervolume,
            "hypervolume_normalised": self.hypervolume_normalised,
            "reference_point": dict(zip([o.name for o in self.objectives], self.reference_values)),
            "group_hypervolumes": self.group_hypervolumes,
            "group_fronts": {g: [self.ids[i] for i in self.group_front(g)]
                             for g in self.group_hypervolumes},
            "presets": [{"name": r.name, **r.values, "note": r.note} for r in self.references],
            "left_out": self.left_out,
            "left_out_predicted": self.predicted,
        }


def analyse(
    values: np.ndarray,
    objectives: Sequence[Objective],
    ids: Sequence[Any] | None = None,
    groups: Sequence[str] | None = None,
) -> ParetoResult:
    """Front, hypervolume (one reference point for all groups) and knee of ``values``."""
    objectives = list(objectives)
    if not 2 <= len(objectives) <= 3:
        raise EdgeExploreError(f"a Pareto analysis takes 2 or 3 objectives, not {len(objectives)}")
    values = np.asarray(values, dtype=float).reshape(-1, len(objectives))
    n = len(values)
    if n == 0:
        raise EdgeExploreError("no complete trials have values for every objective")
    if not np.all(np.isfinite(values)):
        raise EdgeExploreError("objective values must be finite numbers")
    ids = list(range(n)) if ids is None else list(ids)
    groups = [""] * n if groups is None else list(groups)
    mask = pareto_mask(values, objectives)
    ref = reference_point(values, objectives)
    loss = to_loss(values, objectives)
    # Every point lies inside the reference box by construction, so the front alone decides
    # (for each group as for all).
    hv = float(compute_hypervolume(loss[mask], ref, assume_pareto=True))
    box = float(np.prod(ref - loss.min(axis=0)))
    unique_groups = list(dict.fromkeys(groups))
    per_group = {unique_groups[0]: hv}
    own_front = mask.copy()  # one group: its front is the joint front
    if len(unique_groups) > 1:
        garr = np.array(groups, dtype=object)
        for g in unique_groups:
            sel = garr == g
            own = pareto_mask(values[sel], objectives)
            own_front[sel] = own
            per_group[g] = float(compute_hypervolume(loss[sel][own], ref, assume_pareto=True))
    return ParetoResult(
        objectives=objectives, values=values, ids=ids, groups=groups, on_front=mask,
        reference=ref, hypervolume=hv, hypervolume_normalised=hv / box if box > 0 else 0.0,
        knee=knee_index(values, objectives, mask), group_hypervolumes=per_group,
        on_group_front=own_front,
    )


# -- plots --------------------------------------------------------------------------------------

_GROUP_COLOURS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
_FRONT_COLOUR = "#d62728"
_PRESET_COLOUR = "#222222"


def plot(result: ParetoResult, path: str | Path, title: str | None = None) -> Path:
    """Draw the trade-off to ``path``: ``.png`` (``.svg``, ``.pdf``) or a self-contained ``.html``.

    The first objective is the y axis and the second the x axis (accuracy over latency, as the
    EdgeViT paper draws it); a third objective colours the points (the marker size when several
    studies are drawn: then colour is the study, each with its own front). Front points are
    solid and joined by the front's staircase, dominated ones faded; the knee is a star. Presets
    with every objective known are labelled points; presets with only the x (or only the y)
    objective known are labelled vertical (or horizontal) lines. The axes span the trials only;
    presets beyond them are named in a note in the corner.
    """
    path = plot_path(path)  # before importing matplotlib
    fig = _figure(result, pyplot(), title)
    return save(fig, path, title or "Pareto front", after=lambda: _front_table(result),
                style=_PAGE_STYLE)


def _figure(result: ParetoResult, plt: Any, title: str | None):
    objs = result.objectives
    yo, xo = objs[0], objs[1]
    ys = result.values[:, 0] * display(yo.name)[2]
    xs = result.values[:, 1] * display(xo.name)[2]
    fig, ax = plt.subplots(figsize=(8.5, 6))
    mask = result.on_front
    third = objs[2] if len(objs) == 3 else None
    groups = sorted(set(result.groups))
    if len(groups) > 1:
        _draw_studies(ax, result, xs, ys, groups)
    elif third is not None:
        cs = result.values[:, 2] * display(third.name)[2]
        norm = plt.Normalize(cs.min(), cs.max() if cs.max() > cs.min() else cs.min() + 1)
        if (~mask).any():
            ax.scatter(xs[~mask], ys[~mask], c=cs[~mask], cmap="viridis", norm=norm, s=22,
                       alpha=0.3, linewidths=0, label="dominated")
        sc = ax.scatter(xs[mask], ys[mask], c=cs[mask], cmap="viridis", norm=norm, s=70,
                        edgecolors=_FRONT_COLOUR, linewidths=1.6, label="Pareto front", zorder=3)
        bar = fig.colorbar(sc, ax=ax)
        bar.set_label(axis_label(third))
    else:
        if (~mask).any():
            ax.scatter(xs[~mask], ys[~mask], s=20, color=_GROUP_COLOURS[0], alpha=0.3,
                       linewidths=0, label="dominated")
        ax.scatter(xs[mask], ys[mask], s=60, color=_FRONT_COLOUR, edgecolors="black",
                   linewidths=0.8, zorder=3, label="Pareto front")
        _staircase(ax, xs, ys, result.front, xo, _FRONT_COLOUR)
    if result.knee is not None:
        k = result.knee
        ax.scatter([xs[k]], [ys[k]], marker="*", s=320, color="gold", edgecolors="black",
                   linewidths=1.0, zorder=4, label="knee")
        ax.annotate(f"knee (trial {result.ids[k]})", (xs[k], ys[k]), xytext=(12, -4),
                    textcoords="offset points", fontsize=9, va="top", zorder=6,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none",
                          "alpha": 0.8})
    limits = _trial_limits(xs, ys)
    _draw_presets(ax, result, limits)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_xlabel(axis_label(xo))
    ax.set_ylabel(axis_label(yo))
    ax.grid(True, alpha=0.3)
    n_front = int(mask.sum())
    head = title or "Pareto front"
    ax.set_title(
        f"{head}\n{len(xs)} trials, {n_front} on the front, "
        f"hypervolume {result.hypervolume_normalised:.3f} (normalised)",
        fontsize=11,
    )
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    fig.tight_layout()
    return fig


def _staircase(ax: Any, xs: np.ndarray, ys: np.ndarray, front: list[int], xo: Objective,
               colour: str) -> None:
    """The attainment staircase of a 2-objective front (a point covers larger x when x is
    minimised)."""
    idx = np.array(front)
    if len(idx) < 2:
        return
    order = idx[np.argsort(xs[idx])]
    ax.step(xs[order], ys[order], where="post" if xo.direction == "min" else "pre",
            color=colour, linewidth=1.2, alpha=0.8, zorder=2)


def _draw_studies(ax: Any, result: ParetoResult, xs: np.ndarray, ys: np.ndarray,
                  groups: list[str]) -> None:
    """One colour per study, each with its own front (solid, joined by its own staircase with
    two objectives); points on the joint front get a red ring. A third objective is the marker
    size here, since colour already tells the studies apart."""
    objs = result.objectives
    if len(objs) == 3:
        third = result.values[:, 2]
        lo, hi = third.min(), third.max()
        share = (third - lo) / (hi - lo) if hi > lo else np.full(len(third), 0.5)
        # small is better when minimised: the better value draws the larger marker
        share = 1 - share if objs[2].direction == "min" else share
        size = 20 + 120 * share
    else:
        size = np.full(len(xs), 60.0)
    garr = np.array(result.groups, dtype=object)
    own = result.on_group_front if result.on_group_front is not None else result.on_front
    for i, g in enumerate(groups):
        colour = _GROUP_COLOURS[i % len(_GROUP_COLOURS)]
        sel = (garr == g) & ~own
        if sel.any():
            ax.scatter(xs[sel], ys[sel], s=size[sel] / 3, color=colour, alpha=0.3, linewidths=0)
        sel = (garr == g) & own
        rings = np.where(result.on_front[sel], _FRONT_COLOUR, "black")
        ax.scatter(xs[sel], ys[sel], s=size[sel], color=colour, edgecolors=rings,
                   linewidths=np.where(result.on_front[sel], 1.8, 0.6), zorder=3,
                   label=f"study {g}: its own front ({int(sel.sum())})")
        if len(objs) == 2:
            _staircase(ax, xs, ys, result.group_front(g), objs[1], colour)
    ax.scatter([], [], s=60, color="white", edgecolors=_FRONT_COLOUR, linewidths=1.8,
               label="on the joint front")
    if len(objs) == 3:
        ax.scatter([], [], s=60, color="grey", label=f"marker size: {objs[2]} (larger is "
                   "better)")


def _trial_limits(xs: np.ndarray, ys: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Axis limits around the trials alone (5% margin), so a preset far away does not squeeze
    them into a corner; presets outside are named in a note instead."""
    def pad(v: np.ndarray) -> tuple[float, float]:
        lo, hi = float(v.min()), float(v.max())
        m = 0.05 * (hi - lo) if hi > lo else max(abs(lo) * 0.05, 1e-9)
        return lo - m, hi + m

    return pad(xs), pad(ys)


def _draw_presets(ax: Any, result: ParetoResult,
                  limits: tuple[tuple[float, float], ...]) -> None:
    yo, xo = result.objectives[0], result.objectives[1]
    ysc, xsc = display(yo.name)[2], display(xo.name)[2]
    (x0, x1), (y0, y1) = limits
    drew_point = drew_line = False
    outside: list[str] = []
    right_edge = x0 + 0.8 * (x1 - x0)
    for ref in result.references:
        x, y = ref.values.get(xo.name), ref.values.get(yo.name)
        x_in = x is not None and x0 <= x * xsc <= x1
        y_in = y is not None and y0 <= y * ysc <= y1
        if x is not None and y is not None:
            if not (x_in and y_in):
                outside.append(f"{ref.name} ({format_value(xo.name, x)}, "
                               f"{format_value(yo.name, y)})")
                continue
            ax.scatter([x * xsc], [y * ysc], marker="D", s=60, color=_PRESET_COLOUR, zorder=5,
                       label=None if drew_point else "presets")
            drew_point = True
            near_right = x * xsc > right_edge  # keep the label inside the axes
            ax.annotate(ref.name, (x * xsc, y * ysc), xytext=(-6 if near_right else 6, 6),
                        textcoords="offset points", ha="right" if near_right else "left",
                        fontsize=9, fontweight="bold", color=_PRESET_COLOUR)
        elif x is not None or y is not None:
            # One objective known: a dashed line, labelled at the bottom (right) edge, away
            # from the front's best corner.
            vertical = x is not None
            known, other, v = (xo, yo, x * xsc) if vertical else (yo, xo, y * ysc)
            text = f"{ref.name} ({format_value(known.name, x if vertical else y)})"
            if not (x_in if vertical else y_in):
                outside.append(text)
                continue
            (ax.axvline if vertical else ax.axhline)(
                v, color=_PRESET_COLOUR, linestyle="--", linewidth=1, alpha=0.7,
                label=None if drew_line else f"presets ({other.name} not measured)")
            drew_line = True
            place = ({"xy": (v, 0.02), "xycoords": ("data", "axes fraction"), "xytext": (-3, 0),
                      "rotation": 90} if vertical else
                     {"xy": (0.98, v), "xycoords": ("axes fraction", "data"), "xytext": (0, 3)})
            ax.annotate(text, textcoords="offset points", va="bottom", ha="right", fontsize=9,
                        color=_PRESET_COLOUR, **place)
    if outside:
        ax.text(0.99, 0.01, "beyond the trials' range: " + "; ".join(outside),
                transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                color=_PRESET_COLOUR, wrap=True,
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#999999",
                      "alpha": 0.9})


_PAGE_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
               "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}")


def _front_table(result: ParetoResult) -> str:
    """The page's text under the figure: hypervolume, reference point, the front as a table."""
    import html

    heads = "".join(
        f"<th>{html.escape(display(o.name)[0])} ({html.escape(display(o.name)[1])})</th>"
        for o in result.objectives
    )
    rows = []
    for i in result.front:
        cells = "".join(
            f"<td>{v * display(o.name)[2]:.4g}</td>"
            for o, v in zip(result.objectives, result.values[i])
        )
        knee = " (knee)" if i == result.knee else ""
        rows.append(
            f"<tr><td>{html.escape(str(result.ids[i]))}{knee}</td>"
            f"<td>{html.escape(result.groups[i])}</td>{cells}</tr>"
        )
    ref = dict(zip([o.name for o in result.objectives], result.reference_values))
    return (
        f"<p>Hypervolume {result.hypervolume:.6g} (normalised {result.hypervolume_normalised:.4f})"
        f"; reference point {html.escape(str(ref))}</p>"
        f"<table><tr><th>trial</th><th>study</th>{heads}</tr>{''.join(rows)}</table>"
    )
