"""Our tables in the shared SQLite store: architectures, trial results, environments.

They live beside Optuna's own tables (``studies``, ``trials``, ...) in one file, so a study travels
as one file that ``sqlite3``, pandas, Optuna's CLI and optuna-dashboard all open. Column names are
flat and named as a user would say them (``accuracy``, ``latency_ms``, ``flops``, ``params``) so a
filter language can map field names straight to columns; anything variable-shaped (the config,
the per-epoch curve, extra metrics) is JSON text beside them. The schema is documented in
docs/store.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
from collections.abc import Sequence
from datetime import datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, selectinload

from ..config import ArchConfig
from . import db

#: the states a trial result can be in (a plain string column so SQL filters stay readable)
RUNNING = "running"
COMPLETE = "complete"
FAILED = "failed"
INFEASIBLE = "infeasible"
PRUNED = "pruned"
DIVERGED = "diverged"
STATES = (RUNNING, COMPLETE, FAILED, INFEASIBLE, PRUNED, DIVERGED)
#: states that used the training budget (infeasible trials are rejected before training)
EVALUATED_STATES = (RUNNING, COMPLETE, FAILED, PRUNED, DIVERGED)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


class Architecture(db.Base):
    """One network, identified by :attr:`ArchConfig.hash`, with its static cost."""

    __tablename__ = "architectures"

    hash: Mapped[str] = mapped_column(String(16), primary_key=True)
    config: Mapped[str] = mapped_column(Text)  # canonical ArchConfig JSON
    description: Mapped[str] = mapped_column(Text, default="")
    macro: Mapped[str] = mapped_column(String(32), default="edgevit")
    resolution: Mapped[str] = mapped_column(String(16))  # "HxW"
    num_classes: Mapped[int] = mapped_column(Integer)
    params: Mapped[int | None] = mapped_column(Integer, index=True)
    flops: Mapped[int | None] = mapped_column(Integer, index=True)
    activations: Mapped[int | None] = mapped_column(Integer)
    per_stage_flops: Mapped[str | None] = mapped_column(Text)  # JSON {"stem":..,"stage1":..}
    depths: Mapped[str] = mapped_column(String(32))  # "1,1,3,2" for eyeballing
    widths: Mapped[str] = mapped_column(String(64))
    # Flat per-stage columns so a filter such as ``stage3.block == "lgl"`` maps to one column.
    stage1_depth: Mapped[int] = mapped_column(Integer)
    stage1_width: Mapped[int] = mapped_column(Integer)
    stage1_heads: Mapped[int] = mapped_column(Integer)
    stage1_mlp_ratio: Mapped[float] = mapped_column(Float)
    stage1_sample_rate: Mapped[int] = mapped_column(Integer)
    stage1_block: Mapped[str] = mapped_column(String(32))
    stage1_options: Mapped[str] = mapped_column(Text)
    stage2_depth: Mapped[int] = mapped_column(Integer)
    stage2_width: Mapped[int] = mapped_column(Integer)
    stage2_heads: Mapped[int] = mapped_column(Integer)
    stage2_mlp_ratio: Mapped[float] = mapped_column(Float)
    stage2_sample_rate: Mapped[int] = mapped_column(Integer)
    stage2_block: Mapped[str] = mapped_column(String(32))
    stage2_options: Mapped[str] = mapped_column(Text)
    stage3_depth: Mapped[int] = mapped_column(Integer)
    stage3_width: Mapped[int] = mapped_column(Integer)
    stage3_heads: Mapped[int] = mapped_column(Integer)
    stage3_mlp_ratio: Mapped[float] = mapped_column(Float)
    stage3_sample_rate: Mapped[int] = mapped_column(Integer)
    stage3_block: Mapped[str] = mapped_column(String(32))
    stage3_options: Mapped[str] = mapped_column(Text)
    stage4_depth: Mapped[int] = mapped_column(Integer)
    stage4_width: Mapped[int] = mapped_column(Integer)
    stage4_heads: Mapped[int] = mapped_column(Integer)
    stage4_mlp_ratio: Mapped[float] = mapped_column(Float)
    stage4_sample_rate: Mapped[int] = mapped_column(Integer)
    stage4_block: Mapped[str] = mapped_column(String(32))
    stage4_options: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)

    trials: Mapped[list[TrialResult]] = relationship(back_populates="architecture")

    @property
    def arch(self) -> ArchConfig:
        return ArchConfig.from_json(self.config)

    @property
    def per_stage(self) -> dict[str, int]:
        return json.loads(self.per_stage_flops) if self.per_stage_flops else {}


class Environment(db.Base):
    """Where results were produced: library versions, the project's git revision, the device."""

    __tablename__ = "environments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: hash of everything below, so the same environment is one row however many trials use it
    fingerprint: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    python: Mapped[str] = mapped_column(String(32))
    torch: Mapped[str | None] = mapped_column(String(32))
    timm: Mapped[str | None] = mapped_column(String(32))
    optuna: Mapped[str | None] = mapped_column(String(32))
    numpy: Mapped[str | None] = mapped_column(String(32))
    edgeexplore: Mapped[str | None] = mapped_column(String(32))
    git_revision: Mapped[str | None] = mapped_column(String(64))
    git_dirty: Mapped[bool | None] = mapped_column(Boolean)
    platform: Mapped[str] = mapped_column(String(128))
    hostname: Mapped[str] = mapped_column(String(128))
    cpu: Mapped[str | None] = mapped_column(String(256))
    cpu_count: Mapped[int | None] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(256))  # "cpu" or the GPU's name
    details: Mapped[str] = mapped_column(Text)  # full JSON of the above plus extras
    created_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)


class TrialResult(db.Base):
    """One trial of one study: its architecture, state, metrics, curve and timings.

    Optuna keeps its own ``trials`` row; ``optuna_trial_id`` links the two. Reused results (the
    same architecture trained before with the same recipe, data and seed) get their own row with
    ``reused_from`` pointing at the row whose numbers they copy.
    """

    __tablename__ = "trial_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study: Mapped[str] = mapped_column(String(256), index=True)
    optuna_study_id: Mapped[int | None] = mapped_column(Integer)
    optuna_trial_id: Mapped[int | None] = mapped_column(Integer, index=True)
    number: Mapped[int | None] = mapped_column(Integer)  # Optuna's per-study trial number
    arch_hash: Mapped[str | None] = mapped_column(
        String(16), ForeignKey("architectures.hash"), index=True
    )
    state: Mapped[str] = mapped_column(String(16), index=True, default=RUNNING)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    # metrics (NULL when not measured)
    accuracy: Mapped[float | None] = mapped_column(Float, index=True)
    latency_ms: Mapped[float | None] = mapped_column(Float, index=True)
    latency_p90_ms: Mapped[float | None] = mapped_column(Float)
    latency_cv: Mapped[float | None] = mapped_column(Float)
    energy_mj: Mapped[float | None] = mapped_column(Float)
    flops: Mapped[int | None] = mapped_column(Integer, index=True)
    params: Mapped[int | None] = mapped_column(Integer, index=True)
    activations: Mapped[int | None] = mapped_column(Integer)
    epochs: Mapped[int | None] = mapped_column(Integer)  # epochs actually trained
    images_per_second: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[str | None] = mapped_column(Text)  # JSON: every metric incl. extras
    curve: Mapped[str | None] = mapped_column(Text)  # JSON list of per-epoch dicts
    # where the time went (seconds)
    sample_seconds: Mapped[float | None] = mapped_column(Float)
    cost_seconds: Mapped[float | None] = mapped_column(Float)
    latency_seconds: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    store_seconds: Mapped[float | None] = mapped_column(Float)
    total_seconds: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)  # why infeasible / failed / diverged / pruned
    # what it was measured and trained with
    backend: Mapped[str | None] = mapped_column(String(64), index=True)
    backend_settings: Mapped[str | None] = mapped_column(Text)  # JSON
    data: Mapped[str | None] = mapped_column(String(512))  # data spec, e.g. "synthetic"
    resolution: Mapped[str | None] = mapped_column(String(16))
    recipe: Mapped[str | None] = mapped_column(Text)  # JSON of the proxy recipe
    #: hash of (recipe, data, seed): equal keys on one architecture mean reusable training
    train_key: Mapped[str | None] = mapped_column(String(16), index=True)
    reused_from: Mapped[int | None] = mapped_column(Integer)
    environment_id: Mapped[int | None] = mapped_column(ForeignKey("environments.id"))
    # liveness, so a crashed worker's trial is recognised and failed on the next start
    hostname: Mapped[str | None] = mapped_column(String(128))
    pid: Mapped[int | None] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    architecture: Mapped[Architecture | None] = relationship(back_populates="trials")
    environment: Mapped[Environment | None] = relationship()

    __table_args__ = (
        Index("ix_trial_results_study_state", "study", "state"),
        Index("ix_trial_results_reuse", "arch_hash", "train_key", "state"),
    )



# -- writing ------------------------------------------------------------------------------------

def _stage_columns(cfg: ArchConfig) -> dict[str, Any]:
    cols: dict[str, Any] = {}
    for i, s in enumerate(cfg.stages, 1):
        cols[f"stage{i}_depth"] = s.depth
        cols[f"stage{i}_width"] = s.width
        cols[f"stage{i}_heads"] = s.heads
        cols[f"stage{i}_mlp_ratio"] = s.mlp_ratio
        cols[f"stage{i}_sample_rate"] = s.sample_rate
        cols[f"stage{i}_block"] = s.block
        cols[f"stage{i}_options"] = _json(s.opts)
    return cols


def upsert_architecture(session: Session, cfg: ArchConfig, cost: Any | None = None) -> Architecture:
    """The row for ``cfg`` (created if new); ``cost`` (a CostReport) fills in params/FLOPs."""
    row = session.get(Architecture, cfg.hash)
    if row is None:
        row = Architecture(
            hash=cfg.hash,
            config=cfg.to_json(),
            description=cfg.describe(),
            macro=cfg.macro,
            resolution=f"{cfg.resolution[0]}x{cfg.resolution[1]}",
            num_classes=cfg.num_classes,
            depths=",".join(map(str, cfg.depths)),
            widths=",".join(map(str, cfg.widths)),
            **_stage_columns(cfg),
        )
        row = db.add_once(session, row, hash=cfg.hash)
    if cost is not None and row.flops is None:
        row.params = int(cost.params)
        row.flops = int(cost.flops)
        row.activations = int(cost.activations)
        row.per_stage_flops = _json({k: int(v) for k, v in dict(cost.per_stage).items()})
    return row


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_revision() -> tuple[str | None, bool | None]:
    """The project's git revision (and whether the work tree has changes), if it is a checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None, None
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return rev or None, bool(status.strip())


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def describe_environment(device: str | None = None) -> dict[str, Any]:
    """Library versions, the git revision, host and device: what makes a result reproducible.

    Described once per process and device (git and /proc/cpuinfo are read then): a process runs
    the code it imported, and every run or training it records asks again.
    """
    return dict(_described(device))


@cache
def _described(device: str | None) -> dict[str, Any]:
    rev, dirty = _git_revision()
    if device is None:
        device = "cpu"
        try:
            import torch

            if torch.cuda.is_available():
                device = f"cuda: {torch.cuda.get_device_name(0)}"
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
    return {
        "python": platform.python_version(),
        "torch": _version("torch"),
        "timm": _version("timm"),
        "optuna": _version("optuna"),
        "numpy": _version("numpy"),
        "edgeexplore": _version("edgeexplore"),
        "git_revision": rev,
        "git_dirty": dirty,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "device": device,
    }


def get_or_create_environment(session: Session, info: dict[str, Any] | None = None) -> Environment:
    """The environment row matching ``info`` (default: this process's environment)."""
    info = info or describe_environment()
    fp = hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()[:16]
    row = session.scalar(select(Environment).where(Environment.fingerprint == fp))
    if row is None:
        row = db.add_once(session, Environment(fingerprint=fp, details=_json(info), **info),
                          fingerprint=fp)
    return row


def train_key(recipe: dict[str, Any], data: dict[str, Any] | str, seed: int) -> str:
    """Identity of a training setting: same key on the same architecture → reuse the result."""
    blob = json.dumps({"recipe": recipe, "data": data, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- reading -----------------------------------------------------------------------------------

def get_trials(
    session: Session,
    study: str | Sequence[str] | None = None,
    states: Sequence[str] | None = None,
    arch_hash: str | None = None,
) -> list[TrialResult]:
    """Trial results, oldest first, optionally of some studies / states / one architecture."""
    # the architecture rides along, so rows stay usable after their session closes
    q = select(TrialResult).options(selectinload(TrialResult.architecture)).order_by(TrialResult.id)
    if study is not None:
        names = [study] if isinstance(study, str) else list(study)
        q = q.where(TrialResult.study.in_(names))
    if states is not None:
        q = q.where(TrialResult.state.in_(list(states)))
    if arch_hash is not None:
        q = q.where(TrialResult.arch_hash == arch_hash)
    return list(session.scalars(q))


def get_architecture(session: Session, arch_hash: str) -> Architecture | None:
    return session.get(Architecture, arch_hash)


def find_reusable(session: Session, arch_hash: str, key: str) -> TrialResult | None:
    """An earlier complete training of this architecture with the same recipe, data and seed."""
    q = (
        select(TrialResult)
        .where(
            TrialResult.arch_hash == arch_hash,
            TrialResult.train_key == key,
            TrialResult.state == COMPLETE,
            TrialResult.accuracy.is_not(None),
        )
        .order_by(TrialResult.id)
        .limit(1)
    )
    return session.scalar(q)


def completed_curves(session: Session, study: str, key: str | None = None
                     ) -> list[list[dict[str, Any]]]:
    """Per-epoch curves of the study's complete trials (for early stopping of hopeless ones),
    only those trained with training key ``key`` when given (curves of another recipe differ)."""
    q = select(TrialResult.curve).where(
        TrialResult.study == study, TrialResult.state == COMPLETE,
        TrialResult.curve.is_not(None),
    )
    if key is not None:
        q = q.where(TrialResult.train_key == key)
    rows = session.scalars(q)
    return [json.loads(c) for c in rows if c]
