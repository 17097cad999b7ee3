"""``trainings``: long trainings of one architecture (``edgeexplore train``, ``fidelity``).

A row is one training of the architecture ``arch_hash`` (the hash of the ArchConfig as searched,
so it joins ``trial_results``) with the evaluation spec ``spec_key``
(:attr:`edgeexplore.evaluation.TrainingSpec.key`: recipe, data and seed, and the kind). Its
``state`` goes running → complete (or failed, or stopped by ``--stop-after``); ``epochs_done``
follows each epoch, so a killed run shows how far it got. Accuracies are fractions in [0, 1],
as ``trial_results.accuracy``; ``top5`` holds top-min(5, classes).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import db

#: a run ended by ``--stop-after`` before its last epoch (``train --resume`` continues it)
STOPPED = "stopped"


class Training(db.Base):
    """One full (or longer-proxy) training."""

    __tablename__ = "trainings"
    __table_args__ = (Index("ix_trainings_reuse", "arch_hash", "spec_key", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    arch_hash: Mapped[str] = mapped_column(String(16), ForeignKey("architectures.hash"))
    kind: Mapped[str] = mapped_column(String(16))  # the TrainingSpec kind: full or proxy
    spec_key: Mapped[str] = mapped_column(String(16))
    recipe: Mapped[str] = mapped_column(Text)  # JSON, the trainer's full settings
    data: Mapped[str] = mapped_column(Text)  # JSON DataSpec
    seed: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    epochs: Mapped[int] = mapped_column(Integer)  # planned
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    best_top1: Mapped[float | None] = mapped_column(Float)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    final_top1: Mapped[float | None] = mapped_column(Float)
    best_top5: Mapped[float | None] = mapped_column(Float)
    final_top5: Mapped[float | None] = mapped_column(Float)
    checkpoint: Mapped[str | None] = mapped_column(Text)  # best.pt of a full training
    output: Mapped[str | None] = mapped_column(Text)
    curve: Mapped[str | None] = mapped_column(Text)  # JSON per-epoch records
    train_seconds: Mapped[float | None] = mapped_column(Float)
    environment_id: Mapped[int | None] = mapped_column(ForeignKey("environments.id"))
    started_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


def find_complete(session: Session, arch_hash: str, spec_key: str) -> Training | None:
    """The latest complete training of this architecture with this spec (the reuse rule)."""
    return session.scalar(select(Training).where(
        Training.arch_hash == arch_hash, Training.spec_key == spec_key,
        Training.state == "complete").order_by(Training.id.desc()).limit(1))


def find_unfinished(session: Session, arch_hash: str, spec_key: str) -> Training | None:
    """The latest row of this training that did not complete (a resume continues it)."""
    return session.scalar(select(Training).where(
        Training.arch_hash == arch_hash, Training.spec_key == spec_key,
        Training.state != "complete").order_by(Training.id.desc()).limit(1))
