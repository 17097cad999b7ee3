"""The tables of ablations: the ablation, its FLOPs-matched variants, and links to their runs.

A run's numbers (accuracy, curve, latency, timings, seed, recipe) live in the shared
``trial_results`` table (study ``ablation:<name>``) and its network in ``architectures``, so
``trials``-style queries, pandas and a plain ``sqlite3`` see ablation runs like any others; the
tables here only add what is specific to an ablation:

* ``ablations``: one row per named ablation (component, base, FLOPs target, tolerance, data,
  recipe, backend, the seeds last asked for);
* ``ablation_variants``: one row per variant, with the FLOPs matching (depths/widths before and
  after, FLOPs, params, relative error) and its latency;
* ``ablation_runs``: (variant, seed) → ``trial_results.id``; ``reused`` tells whether the result
  was copied from an earlier training of the same network with the same recipe, data and seed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import db
from .schema import TrialResult

#: trial_results.study of an ablation's runs
STUDY_PREFIX = "ablation:"


class Ablation(db.Base):
    __tablename__ = "ablations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), unique=True, index=True)
    component: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str | None] = mapped_column(Text)  # the YAML file of a user-defined list
    base_config: Mapped[str] = mapped_column(Text)  # ArchConfig JSON before any variant
    resolution: Mapped[str] = mapped_column(String(16))  # "HxW"
    flops_target: Mapped[int] = mapped_column(Integer)
    tolerance: Mapped[float] = mapped_column(Float)
    data: Mapped[str] = mapped_column(Text)  # JSON: spec, subsets, classes
    recipe: Mapped[str] = mapped_column(Text)  # JSON proxy recipe
    backend: Mapped[str | None] = mapped_column(String(64))
    seeds: Mapped[str] = mapped_column(Text)  # JSON list, the seeds last asked for
    #: hash of everything above except the seeds: the same name with other settings is an error
    settings_key: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="running")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)

    variants: Mapped[list[AblationVariant]] = relationship(
        back_populates="ablation",
        order_by="AblationVariant.position",
        cascade="all, delete-orphan",
    )

    @property
    def seed_list(self) -> list[int]:
        return json.loads(self.seeds)

    @property
    def study(self) -> str:
        return STUDY_PREFIX + self.name


class AblationVariant(db.Base):
    __tablename__ = "ablation_variants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ablation_id: Mapped[int] = mapped_column(ForeignKey("ablations.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    changes: Mapped[str] = mapped_column(Text)  # JSON of the Variant definition
    arch_hash: Mapped[str] = mapped_column(ForeignKey("architectures.hash"), index=True)
    start_depths: Mapped[str] = mapped_column(String(32))  # "1,1,3,2"
    start_widths: Mapped[str] = mapped_column(String(64))
    start_flops: Mapped[int] = mapped_column(Integer)
    depths: Mapped[str] = mapped_column(String(32))
    widths: Mapped[str] = mapped_column(String(64))
    adjustment: Mapped[str] = mapped_column(Text)  # "depths 1,1,3,2 → 1,1,3,1"
    flops: Mapped[int] = mapped_column(Integer)
    params: Mapped[int] = mapped_column(Integer)
    rel_error: Mapped[float] = mapped_column(Float)  # flops / target - 1
    latency_ms: Mapped[float | None] = mapped_column(Float)
    latency: Mapped[str | None] = mapped_column(Text)  # JSON of the Measurement
    latency_error: Mapped[str | None] = mapped_column(Text)

    ablation: Mapped[Ablation] = relationship(back_populates="variants")
    runs: Mapped[list[AblationRun]] = relationship(
        back_populates="variant",
        order_by="AblationRun.seed",
        cascade="all, delete-orphan",
    )

    __table_args__ = (UniqueConstraint("ablation_id", "name", name="uq_ablation_variant_name"),)


class AblationRun(db.Base):
    __tablename__ = "ablation_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    variant_id: Mapped[int] = mapped_column(ForeignKey("ablation_variants.id"), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    trial_result_id: Mapped[int] = mapped_column(ForeignKey("trial_results.id"))
    reused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)

    variant: Mapped[AblationVariant] = relationship(back_populates="runs")
    result: Mapped[TrialResult] = relationship()

    __table_args__ = (UniqueConstraint("variant_id", "seed", name="uq_ablation_run_seed"),)


def as_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)

