"""``preset_trainings``: proxy accuracies of presets trained as Pareto reference points.

``edgeexplore pareto --train-presets`` trains edgevit_xxs/xs/s with a study's proxy recipe, data
and seed, as a trial of that study would be trained. The result is kept here, keyed by
architecture hash and the study's training key (:func:`edgeexplore.store.train_key`), so the next
plot of the same study (other objectives, another format) does not train them again. They are
not trials: they belong to no study and never enter a front.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import db


class PresetTraining(db.Base):
    """One proxy training of a preset."""

    __tablename__ = "preset_trainings"
    __table_args__ = (UniqueConstraint("arch_hash", "train_key", name="uq_preset_training"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    preset: Mapped[str] = mapped_column(String(64))
    arch_hash: Mapped[str] = mapped_column(String(16), index=True)
    train_key: Mapped[str] = mapped_column(String(16))
    study: Mapped[str] = mapped_column(Text)  # whose recipe, data and seed were used
    accuracy: Mapped[float] = mapped_column(Float)
    curve: Mapped[str] = mapped_column(Text)  # JSON list of per-epoch dicts, as trial_results
    train_seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)


def find(session: Session, arch_hash: str, train_key: str) -> PresetTraining | None:
    return session.scalar(select(PresetTraining).where(
        PresetTraining.arch_hash == arch_hash, PresetTraining.train_key == train_key))
