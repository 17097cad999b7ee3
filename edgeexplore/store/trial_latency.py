"""Where each trial's latency came from: measured on the backend, or predicted (issue 15).

A search with a ``predicted`` latency spec predicts every trial with the device's learned
predictor and measures only the trials near its Pareto front, so ``trial_results.latency_ms``
alone no longer says what it is. ``trial_latency`` holds, per ``trial_results`` row, its
``source`` (``measured`` or ``predicted``) and, for trials that were predicted (measured later or
not), the prediction and the predictor's cross-validated error at the time. A table of its own
beside ``trial_results`` (one row per trial with a latency) leaves the older table's schema as
stores out there have it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import db

MEASURED = "measured"
PREDICTED = "predicted"
SOURCES = (MEASURED, PREDICTED)


class TrialLatency(db.Base):
    """The source of one trial's ``latency_ms`` and, when it was predicted, the prediction."""

    __tablename__ = "trial_latency"

    trial_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("trial_results.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), index=True)
    #: the learned predictor's value (kept after the trial is measured, to compare)
    predicted_ms: Mapped[float | None] = mapped_column(Float)
    #: the predictor's cross-validated worst relative error: the margin the front test allows
    predictor_error: Mapped[float | None] = mapped_column(Float)
    predictor_mape: Mapped[float | None] = mapped_column(Float)
    predictor_within10: Mapped[float | None] = mapped_column(Float)
    #: how many measured architectures the predictor was fitted on, and its method
    predictor_n: Mapped[int | None] = mapped_column(Integer)
    predictor_method: Mapped[str | None] = mapped_column(String(32))


#: the columns besides ``trial_id``, as :func:`put` takes them
COLUMNS = ("source", "predicted_ms", "predictor_error", "predictor_mape", "predictor_within10",
           "predictor_n", "predictor_method")


def put(session: Session, trial_id: int, values: dict[str, Any]) -> None:
    """Insert or replace the row of ``trial_id`` (inside the caller's transaction)."""
    session.execute(delete(TrialLatency).where(TrialLatency.trial_id == trial_id))
    session.add(TrialLatency(trial_id=trial_id, **{k: values.get(k) for k in COLUMNS}))


def mark_measured(session: Session, trial_id: int) -> None:
    """A predicted trial was measured: its source changes, its prediction stays."""
    row = session.get(TrialLatency, trial_id)
    if row is None:
        session.add(TrialLatency(trial_id=trial_id, source=MEASURED))
    else:
        row.source = MEASURED


def source_of(trial_id: Any):
    """``latency_source`` of the trial ``trial_id`` (a column) as a correlated subquery: NULL
    where the trial has no latency."""
    return select(TrialLatency.source).where(TrialLatency.trial_id == trial_id) \
        .scalar_subquery()


def get(session: Session, trial_id: int) -> dict[str, Any] | None:
    row = session.get(TrialLatency, trial_id)
    return None if row is None else {k: getattr(row, k) for k in COLUMNS}
