"""The latency tables: measurements (the cache) and the lut backend's unit and calibration tables.

``latency_measurements`` caches one measurement per (architecture hash, input shape, batch,
backend, settings JSON, device fingerprint), so timing the same network twice on the same device
with the same settings is free; a forced re-measurement replaces the row. Statistics are flat
columns (SQL-filterable); the samples and the full record are JSON.

``latency_lut_units`` and ``latency_lut_calibration`` hold the lut backend's per-unit timings and
the whole-model measurements that calibrate its constant, keyed the same way (unit signature
instead of architecture hash), so the table grows across studies and survives restarts.

The functions here speak in keys and plain dicts: the latency package turns them into its
``Measurement`` objects, so the store needs nothing from above it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, Integer, String, Text, UniqueConstraint, delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import EdgeExploreError
from . import db


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


# -- the measurement cache ------------------------------------------------------------------------

def cached_record(store: db.Store, key: dict[str, Any]) -> dict[str, Any] | None:
    """The stored ``Measurement.to_dict()`` under ``key`` (the unique columns), or None."""
    try:
        with store.session() as s:
            record = s.scalar(select(LatencyMeasurement.record).filter_by(**key).limit(1))
    except SQLAlchemyError as e:
        raise EdgeExploreError(f"cannot read the latency cache: {db.error_reason(e)}") from None
    return None if record is None else json.loads(record)


def put_record(store: db.Store, key: dict[str, Any], record: dict[str, Any], device: str) -> None:
    """Insert or replace the measurement under ``key`` (one transaction).

    ``record`` is ``Measurement.to_dict()``; its statistics are copied into the flat columns and
    ``device`` is the short device name shown in listings.
    """
    energy = record.get("energy_j") or {}
    try:
        with store.session() as s:
            s.execute(delete(LatencyMeasurement).filter_by(**key))
            row = LatencyMeasurement(
                **key, device=device, device_json=json.dumps(record.get("device"), default=str),
                threads=record.get("threads"), median_ms=record["median_ms"],
                mean_ms=record["mean_ms"], p10_ms=record["p10_ms"], p90_ms=record["p90_ms"],
                iqr_ms=record["iqr_ms"], cv=record["cv"], count=record["count"],
                warmup=record["warmup"], energy_median_j=energy.get("median_j"),
                samples_ms=json.dumps(record["samples_ms"]), record=json.dumps(record, default=str),
            )
            # Another worker timing the same key at the same moment may insert first (on
            # PostgreSQL our delete does not see its uncommitted row): its measurement stands.
            try:
                with s.begin_nested():
                    s.add(row)
            except IntegrityError:
                pass
    except SQLAlchemyError as e:
        raise EdgeExploreError(f"cannot write the latency cache: {db.error_reason(e)}") from None


# -- the lut backend's tables ---------------------------------------------------------------------

def lut_units(store: db.Store, key: dict[str, str]) -> dict[tuple[str, str], float]:
    """(signature, input shape) → median ms of every unit timed on one base backend and device."""
    with store.session() as s:
        rows = s.execute(select(LutUnit.signature, LutUnit.input_shape, LutUnit.median_ms)
                         .filter_by(**key))
        return {(sig, shape): ms for sig, shape, ms in rows}


def lut_unit(store: db.Store, signature: str, input_shape: str, key: dict[str, str]
             ) -> float | None:
    """The median ms of one unit, if another process has timed it since the table was read."""
    with store.session() as s:
        return s.scalar(select(LutUnit.median_ms).filter_by(
            signature=signature, input_shape=input_shape, **key).limit(1))


def add_lut_unit(store: db.Store, **row: Any) -> None:
    """Record a unit's timing; a row another process stored first for the same unit wins."""
    try:
        with store.session() as s:
            s.add(LutUnit(**row))
    except IntegrityError:
        pass  # another process timed the same unit meanwhile; either value will do


def lut_calibration(store: db.Store, input_shape: str, key: dict[str, str]
                    ) -> list[LutCalibration]:
    """The calibration models of one input shape, base backend and device, oldest first."""
    with store.session() as s:
        return list(s.scalars(select(LutCalibration).filter_by(input_shape=input_shape, **key)
                              .order_by(LutCalibration.id)))


def add_lut_calibration(store: db.Store, row: LutCalibration) -> None:
    """Record a calibration model; one another process stored first for the same model wins."""
    try:
        with store.session() as s:
            s.add(row)
    except IntegrityError:
        pass


# -- the learned predictor ------------------------------------------------------------------------

class LatencyPredictor(db.Base):
    """A fitted latency predictor: which measured architectures train it, and its CV error.

    No model is stored: the predictor is refitted from these architectures' rows in
    ``latency_measurements`` (same backend, settings, batch and device) when it is loaded.
    """

    __tablename__ = "latency_predictors"
    __table_args__ = (
        UniqueConstraint("backend", "settings", "batch", "device_fingerprint",
                         name="uq_latency_predictor"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backend: Mapped[str] = mapped_column(String(64))
    settings: Mapped[str] = mapped_column(Text)  # canonical JSON, as in latency_measurements
    batch: Mapped[int] = mapped_column(Integer)
    device_fingerprint: Mapped[str] = mapped_column(String(16))
    device: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(32))
    #: "analytic" or "units" (the fit may read the device's unit table): see device_predictor
    features: Mapped[str] = mapped_column(String(16), server_default="analytic")
    archs: Mapped[str] = mapped_column(Text)  # JSON list of ArchConfig dicts, in training order
    report: Mapped[str] = mapped_column(Text)  # JSON: the CV error of the chosen and all methods
    created_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)


_PREDICTOR_KEY = ("backend", "settings", "batch", "device_fingerprint")


def _predictor(row: LatencyPredictor) -> dict[str, Any]:
    return {"method": row.method, "features": row.features, "device": row.device,
            "archs": json.loads(row.archs),
            "report": json.loads(row.report), "updated_at": row.updated_at,
            **{k: getattr(row, k) for k in _PREDICTOR_KEY}}


def get_predictor(store: db.Store, key: dict[str, Any]) -> dict[str, Any] | None:
    """The predictor row under ``key`` (backend, settings, batch, device_fingerprint) as a dict."""
    with store.session() as s:
        row = s.scalar(select(LatencyPredictor).filter_by(**key).limit(1))
        return None if row is None else _predictor(row)


def list_predictors(store: db.Store) -> list[dict[str, Any]]:
    """Every stored predictor, newest first, as :func:`get_predictor` gives them."""
    with store.session() as s:
        return [_predictor(row) for row in s.scalars(
            select(LatencyPredictor).order_by(LatencyPredictor.updated_at.desc()))]


def put_predictor(store: db.Store, key: dict[str, Any], *, device: str, method: str,
                  features: str, archs: list[dict[str, Any]], report: dict[str, Any]) -> None:
    """Insert or replace the predictor under ``key`` (one transaction)."""
    try:
        with store.session() as s:
            row = s.scalar(select(LatencyPredictor).filter_by(**key).limit(1))
            if row is None:
                row = LatencyPredictor(**key)
                s.add(row)
            row.device, row.method, row.features = device, method, features
            row.archs, row.report = json.dumps(archs), json.dumps(report)
            row.updated_at = db.utcnow()
    except SQLAlchemyError as e:
        raise EdgeExploreError(f"cannot store the latency predictor: {db.error_reason(e)}"
                               ) from None
