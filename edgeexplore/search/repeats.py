"""An architecture a study already found infeasible is not checked again.

Samplers re-propose: random sampling of a small space repeats itself, and TPE or NSGA-II draw
again near a pruned point. Checking a repeat again would cost what the first check cost (a cost
count, a latency measurement: device time on the ``command`` backend), store a second infeasible
row and print a second line. So right after the space turns a trial's parameters into an
architecture, :func:`register` writes the architecture's hash on the worker's reserved row and
reads the study's other rows of that architecture, in one transaction that the study's workers
take one at a time (the write lock the update takes on SQLite, the study's advisory lock on
PostgreSQL), and finds one of:

* a stored infeasible row that the current constraints still reject (a constraint may be changed
  on resume): a :class:`Repeat`. The worker tells Optuna the trial was pruned, with that row's
  constraint values, and draws the next sample into the same reserved row;
* a running row of a live worker, which is checking or training the architecture now: wait for
  it and look again, so two workers never check one architecture at the same time;
* neither: the architecture is evaluated. A feasible repeat is evaluated as before, its training
  reused from the stored one (``reused_from``); it uses the budget like any trained trial.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from .. import store
from ..config import ArchConfig
from ..evaluation import LatencySpec
from ..store import TrialResult, db, liveness
from .space import Constraints


@dataclass(frozen=True)
class Repeat:
    """A proposal of an architecture that the study's row ``of`` found infeasible; ``values``
    are that row's params, FLOPs and latency (its constraint values)."""

    of: int
    values: dict[str, float | None]


def study_lock(session: Session, study: str) -> None:
    """Serialise the study's workers until this transaction ends, on PostgreSQL (ids are handed
    out before commit there, so no row can tell who came first). On SQLite the caller's first
    statement must be a write: it takes the database's write lock, held to the end likewise."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"edgeexplore.reserve:{study}".encode()).digest()
        # a signed 64-bit key, as PostgreSQL wants it
        key = int.from_bytes(digest[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def register(url: str, study: str, row_id: int, cfg: ArchConfig, link: dict[str, Any],
             constraints: Constraints, latency: LatencySpec) -> Repeat | None:
    """Mark the reserved row ``row_id`` as checking ``cfg`` (and ``link`` it to its Optuna
    trial); a :class:`Repeat` instead when the study already found ``cfg`` infeasible."""
    with db.session_scope(url) as s:  # the row's arch_hash needs the architecture's row
        store.upsert_architecture(s, cfg)
    settings = json.dumps(latency.to_dict(), sort_keys=True)
    while True:
        with db.session_scope(url) as s:
            study_lock(s, study)
            s.execute(update(TrialResult).where(TrialResult.id == row_id)
                      .values(arch_hash=cfg.hash, **link))
            rows = s.execute(select(
                TrialResult.id, TrialResult.state, TrialResult.params, TrialResult.flops,
                TrialResult.latency_ms, TrialResult.backend_settings, TrialResult.hostname,
                TrialResult.pid, TrialResult.heartbeat_at,
            ).where(TrialResult.study == study, TrialResult.arch_hash == cfg.hash,
                    TrialResult.id != row_id,
                    TrialResult.state.in_((store.INFEASIBLE, store.RUNNING)))).all()
            known = next((r for r in rows if r.state == store.INFEASIBLE
                          and _still_rejected(r, constraints, latency, settings)), None)
            busy = any(r.state == store.RUNNING
                       and not liveness.is_dead(r.hostname, r.pid, r.heartbeat_at) for r in rows)
            if known is None and not busy:
                return None
            # Unmarked, so that no other worker waits for this row (it checks nothing now); a
            # repeat's trial is finished at once, so not even a dead worker's row may name it
            # (its recovery would queue the repeat again).
            unmark = dict.fromkeys(["arch_hash", *(link if known is not None else ())])
            s.execute(update(TrialResult).where(TrialResult.id == row_id).values(**unmark))
        if known is not None:
            return Repeat(known.id, {"params": known.params, "flops": known.flops,
                                     "latency_ms": known.latency_ms})
        time.sleep(min(2.0, liveness.heartbeat_s()))


def _still_rejected(row: Any, cons: Constraints, latency: LatencySpec, settings: str) -> bool:
    """Whether the current constraints reject the stored infeasible ``row`` as they did then."""
    if row.params is None:
        # its cost was never counted: the builder refused it, whatever the limits
        return True
    if cons.check_cost(row.params, row.flops) is not None:
        return True
    # the stored latency is the one the limit reads only when measured on that limit's
    # backend with today's settings; otherwise the check runs again (on cached measurements)
    return (row.latency_ms is not None and cons.latency_backend in (None, latency.backend)
            and row.backend_settings == settings
            and cons.check_latency(row.latency_ms) is not None)
