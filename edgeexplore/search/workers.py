"""Who is working on a study: the running trials' workers and their heartbeats, per host.

A search process stamps ``heartbeat_at`` on its running ``trial_results`` row every
:func:`~edgeexplore.store.liveness.heartbeat_s` seconds. A row whose stamp is older than the
grace (:func:`~edgeexplore.store.liveness.grace_s`) is the same "silent" worker that every search
worker marks failed (``recover_stale``), so it is reported as stale here by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from .. import store
from ..errors import EdgeExploreError
from ..store import db
from ..store.liveness import GRACE_S, HEARTBEAT_S, grace_s

__all__ = ["GRACE_S", "HEARTBEAT_S", "HostSummary", "Worker", "study_workers"]


@dataclass
class Worker:
    """One process with a trial in progress."""

    hostname: str | None
    pid: int | None
    trial_id: int  # our trial_results id (what `trials show` takes)
    number: int | None  # Optuna's trial number within the study
    arch_hash: str | None
    architecture: str | None  # its short description
    started_at: datetime
    heartbeat_at: datetime | None
    seconds_since_heartbeat: float | None
    stale: bool


@dataclass
class HostSummary:
    """The study's trials on one host: in progress, finished, and how many of those are stale."""

    hostname: str | None
    running: int
    finished: int
    stale: int


def study_workers(study: str, storage: str | None = None, now: datetime | None = None
                  ) -> tuple[list[Worker], list[HostSummary]]:
    """The running trials of ``study`` (oldest first) and a per-host summary."""
    url = db.normalise_url(storage)
    now = now or db.utcnow()
    results, archs = store.TrialResult, store.Architecture
    with db.open_store(url, create=False).session() as s:  # a reader: never creates a store
        if not s.scalar(select(func.count()).where(results.study == study)):
            raise EdgeExploreError(f"{db.shown(url)} holds no trials of a study named {study!r} "
                                   "(see edgeexplore studies)")
        running = s.execute(
            select(results, archs.description)
            .outerjoin(archs, results.arch_hash == archs.hash)
            .where(results.study == study, results.state == store.RUNNING)
            .order_by(results.started_at, results.id)
        ).all()
        finished = dict(s.execute(
            select(results.hostname, func.count())
            .where(results.study == study, results.state != store.RUNNING)
            .group_by(results.hostname)
        ).all())
    workers = [_worker(r, description, now) for r, description in running]
    hosts: dict[str | None, HostSummary] = {
        h: HostSummary(h, 0, n, 0) for h, n in finished.items()
    }
    for w in workers:
        summary = hosts.setdefault(w.hostname, HostSummary(w.hostname, 0, 0, 0))
        summary.running += 1
        summary.stale += w.stale
    return workers, sorted(hosts.values(), key=lambda h: h.hostname or "")


def _worker(r: store.TrialResult, description: str | None, now: datetime) -> Worker:
    since = None if r.heartbeat_at is None else (now - r.heartbeat_at).total_seconds()
    # same rule as recover_stale: no heartbeat at all, or none for longer than the grace
    stale = since is None or since > grace_s()
    return Worker(r.hostname, r.pid, r.id, r.number, r.arch_hash, description, r.started_at,
                  r.heartbeat_at, since, stale)
