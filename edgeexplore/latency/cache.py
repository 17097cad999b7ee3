"""The latency tables in the shared store: measurements (the cache) and the lut backend's tables.

``latency_measurements`` caches one :class:`~edgeexplore.latency.base.Measurement` per
(architecture hash, input shape, batch, backend, settings JSON, device fingerprint), so timing
the same network twice on the same device with the same settings is free; ``force`` replaces the
row. Statistics are flat columns (SQL-filterable); the samples and the full record are JSON.

``latency_lut_units`` and ``latency_lut_calibration`` hold the lut backend's per-unit timings and
the whole-model measurements that calibrate its constant, keyed the same way (unit signature
instead of architecture hash), so the table grows across studies and survives restarts.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, Integer, String, Text, UniqueConstraint, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import EdgeExploreError
from ..store import db
from .base import Measurement, device_fingerprint, settings_json


def shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(d)) for d in shape)


class LatencyMeasurement(db.Base):
    """One cached measurement."""

    __tablename__ = "latency_measurements"
    __table_args__ = (
        UniqueConstraint("arch_hash", "input_shape", "batch", "backend", "settings",
                         "device_fingerprint", name="uq_latency_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    arch_hash: Mapped[str] = mapped_column(String(64), index=True)
    input_shape: Mapped[str] = mapped_column(String(64))  # "1x3x224x224"
    batch: Mapped[int] = mapped_column(Integer)
    backend: Mapped[str] = mapped_column(String(64), index=True)
    settings: Mapped[str] = mapped_column(Text)  # canonical JSON
    device_fingerprint: Mapped[str] = mapped_column(String(16))
    device: Mapped[str] = mapped_column(Text)  # short: CPU or GPU model
    device_json: Mapped[str] = mapped_column(Text)
    threads: Mapped[int | None] = mapped_column(Integer)
    median_ms: Mapped[float] = mapped_column(Float)
    mean_ms: Mapped[float] = mapped_column(Float)
    p10_ms: Mapped[float] = mapped_column(Float)
    p90_ms: Mapped[float] = mapped_column(Float)
    iqr_ms: Mapped[float] = mapped_column(Float)
    cv: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)
    warmup: Mapped[int] = mapped_column(Integer)
    energy_median_j: Mapped[float | None] = mapped_column(Float)
    samples_ms: Mapped[str] = mapped_column(Text)  # JSON list
    record: Mapped[str] = mapped_column(Text)  # the full Measurement.to_dict() as JSON
    created_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)


class LutUnit(db.Base):
    """The median latency of one unit (block, stem, downsampler, head) at one input shape."""

    __tablename__ = "latency_lut_units"
    __table_args__ = (
        UniqueConstraint("signature", "input_shape", "base_backend", "base_settings",
                         "device_fingerprint", name="uq_lut_unit"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signature: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(128))  # module class name, for people reading it
    input_shape: Mapped[str] = mapped_column(String(128))
    base_backend: Mapped[str] = mapped_column(String(64))
    base_settings: Mapped[str] = mapped_column(Text)
    device_fingerprint: Mapped[str] = mapped_column(String(16))
    median_ms: Mapped[float] = mapped_column(Float)
    p10_ms: Mapped[float] = mapped_column(Float)
    p90_ms: Mapped[float] = mapped_column(Float)
    cv: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)


class LutCalibration(db.Base):
    """A whole model measured on the base backend beside the sum of its units' table entries."""

    __tablename__ = "latency_lut_calibration"
    __table_args__ = (
        UniqueConstraint("model_key", "input_shape", "base_backend", "base_settings",
                         "device_fingerprint", name="uq_lut_calibration"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_key: Mapped[str] = mapped_column(String(64))
    input_shape: Mapped[str] = mapped_column(String(128))
    base_backend: Mapped[str] = mapped_column(String(64))
    base_settings: Mapped[str] = mapped_column(Text)
    device_fingerprint: Mapped[str] = mapped_column(String(16))
    unit_sum_ms: Mapped[float] = mapped_column(Float)
    measured_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)


def _short_device(device: dict[str, Any]) -> str:
    for key in ("gpu", "device_name", "cpu"):
        if device.get(key):
            return str(device[key])
    return "unknown"


def cache_key(arch_hash: str, m_or_shape: Any, backend: str, settings: dict[str, Any],
              device: dict[str, Any]) -> dict[str, Any]:
    shape = m_or_shape.input_shape if isinstance(m_or_shape, Measurement) else tuple(m_or_shape)
    return {
        "arch_hash": arch_hash, "input_shape": shape_str(shape), "batch": int(shape[0]),
        "backend": backend, "settings": settings_json(settings),
        "device_fingerprint": device_fingerprint(device),
    }


def lookup(storage: str | None, key: dict[str, Any]) -> Measurement | None:
    """The cached measurement for ``key``, or None."""
    try:
        with db.session_scope(storage) as s:
            row = s.scalars(select(LatencyMeasurement).filter_by(**key)).first()
            return None if row is None else _restore(row)
    except SQLAlchemyError as e:
        raise EdgeExploreError(f"cannot read the latency cache: {db.error_reason(e)}") from None


def _restore(row: LatencyMeasurement) -> Measurement:
    m = Measurement.from_dict(json.loads(row.record))
    m.cached = True
    return m


def store(storage: str | None, key: dict[str, Any], m: Measurement) -> None:
    """Insert or replace the measurement for ``key`` (one transaction)."""
    record = m.to_dict()
    record["cached"] = False
    try:
        with db.session_scope(storage) as s:
            s.execute(delete(LatencyMeasurement).filter_by(**key))
            s.add(LatencyMeasurement(
                **key, device=_short_device(m.device),
                device_json=json.dumps(m.device, default=str),
                threads=m.threads, median_ms=m.median_ms, mean_ms=m.mean_ms, p10_ms=m.p10_ms,
                p90_ms=m.p90_ms, iqr_ms=m.iqr_ms, cv=m.cv, count=m.count, warmup=m.warmup,
                energy_median_j=(m.energy_j or {}).get("median_j"),
                samples_ms=json.dumps(m.samples_ms), record=json.dumps(record, default=str),
            ))
    except SQLAlchemyError as e:
        raise EdgeExploreError(f"cannot write the latency cache: {db.error_reason(e)}") from None


def measurements_for(storage: str | None, arch_hash: str) -> list[Measurement]:
    """Every cached measurement of one architecture (all backends, devices and settings)."""
    with db.session_scope(storage) as s:
        rows = s.scalars(select(LatencyMeasurement).filter_by(arch_hash=arch_hash)
                         .order_by(LatencyMeasurement.id)).all()
        return [_restore(r) for r in rows]
