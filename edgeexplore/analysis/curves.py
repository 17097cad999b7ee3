"""Per-epoch learning curves of chosen trials: rows for a listing, and one overlay plot.

The proxy trainer stores one dict per finished epoch (``epoch``, ``train_loss``, ``val_acc``,
``lr``, ``seconds``); an interrupted or diverged trial has the epochs it finished. The plot has
two panels sharing the epoch axis, validation accuracy and training loss (the trainer measures
no validation loss), with one line per trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EdgeExploreError
from .figures import plot_path, pyplot, save
from .query import get_trial

#: what each panel plots, as (curve key, axis label)
PANELS = (("val_acc", "validation accuracy (%)"), ("train_loss", "training loss"))


@dataclass(frozen=True)
class TrialCurve:
    id: int
    study: str
    number: int | None
    state: str
    points: list[dict[str, Any]]

    @property
    def label(self) -> str:
        number = "" if self.number is None else f" #{self.number}"
        return f"trial {self.id} ({self.study}{number}, {self.state})"


def load_curves(ids: Sequence[int], storage: str | None = None) -> list[TrialCurve]:
    """The stored curves of ``ids``, in that order; a trial that trained no epoch is an error."""
    curves = []
    for i in dict.fromkeys(ids):  # a repeated id is drawn once
        t = get_trial(i, storage=storage)
        if not t.curve:
            raise EdgeExploreError(f"trial {i} has no learning curve ({t.state}: it finished "
                                   "no training epoch)")
        curves.append(TrialCurve(t.id, t.study, t.number, t.state, t.curve))
    return curves


def curve_rows(curves: Sequence[TrialCurve]) -> list[dict[str, Any]]:
    """One row per trial and epoch."""
    return [{"id": c.id, "study": c.study, "epoch": p.get("epoch"), "val_acc": p.get("val_acc"),
             "train_loss": p.get("train_loss"), "lr": p.get("lr"), "seconds": p.get("seconds")}
            for c in curves for p in c.points]


def plot_curves(curves: Sequence[TrialCurve], path: str | Path, title: str | None = None
                ) -> Path:
    """Overlay the curves to ``path``: .png, .svg, .pdf, or a self-contained .html page."""
    path = plot_path(path)  # before importing matplotlib
    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(8.5, 7), sharex=True)
    for c in curves:
        epochs = [p.get("epoch") for p in c.points]
        for ax, (key, _) in zip(axes, PANELS):
            ys = [p.get(key) for p in c.points]
            if key == "val_acc":
                ys = [None if y is None else 100 * y for y in ys]
            ax.plot(epochs, [float("nan") if y is None else y for y in ys], marker="o",
                    markersize=3, label=c.label)
    for ax, (_, label) in zip(axes, PANELS):
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("epoch")
    axes[0].legend(loc="best", fontsize=8, framealpha=0.85)
    axes[0].set_title(title or "Learning curves")
    fig.tight_layout()
    return save(fig, path, title or "Learning curves")
