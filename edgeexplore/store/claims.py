"""``training_claims``: which process is training an architecture with a training key now.

Two workers (on any hosts) that reach the same architecture with the same recipe, data and seed
at once must not both train it. Before training, a worker inserts the claim ``(arch_hash,
train_key)``; the primary key lets exactly one insert win, inside a savepoint so the loser's
transaction goes on. The loser waits for the winner's result and reuses it; if the winner's
claim disappears without a result (it failed) or its heartbeat goes silent (it died), the loser
takes the claim over and trains. The winner deletes its claim once its result is stored.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import db, liveness


class TrainingClaim(db.Base):
    """A training in progress of one architecture with one training key, by one process."""

    __tablename__ = "training_claims"

    arch_hash: Mapped[str] = mapped_column(String(16), primary_key=True)
    train_key: Mapped[str] = mapped_column(String(16), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int] = mapped_column(Integer)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=db.utcnow)


def _mine() -> dict[str, object]:
    return {"hostname": socket.gethostname(), "pid": os.getpid()}


def try_claim(session: Session, arch_hash: str, train_key: str) -> bool:
    """Claim the training, or take over a dead owner's claim; False while a live one holds it."""
    try:
        with session.begin_nested():
            session.add(TrainingClaim(arch_hash=arch_hash, train_key=train_key,
                                      heartbeat_at=db.utcnow(), **_mine()))
        return True
    except IntegrityError:
        pass
    held = session.get(TrainingClaim, (arch_hash, train_key), populate_existing=True)
    if held is None:  # released between our insert and this look-up: try again later
        return False
    if not liveness.is_dead(held.hostname, held.pid, held.heartbeat_at):
        return False
    # the update names the dead owner, so of several workers taking over only one succeeds
    return session.execute(update(TrainingClaim).where(
        TrainingClaim.arch_hash == arch_hash, TrainingClaim.train_key == train_key,
        TrainingClaim.hostname == held.hostname, TrainingClaim.pid == held.pid,
        TrainingClaim.heartbeat_at == held.heartbeat_at,
    ).values(heartbeat_at=db.utcnow(), **_mine())).rowcount == 1


def busy_elsewhere(session: Session, arch_hash: str, train_key: str) -> bool:
    """Whether another live process holds the claim now (so a caller with other work to do
    can do that first and reuse this result later)."""
    held = session.get(TrainingClaim, (arch_hash, train_key))
    me = _mine()
    if held is None or (held.hostname, held.pid) == (me["hostname"], me["pid"]):
        return False
    return not liveness.is_dead(held.hostname, held.pid, held.heartbeat_at)


def _where_mine(arch_hash: str, train_key: str):
    me = _mine()
    return (TrainingClaim.arch_hash == arch_hash, TrainingClaim.train_key == train_key,
            TrainingClaim.hostname == me["hostname"], TrainingClaim.pid == me["pid"])


@contextmanager
def held(url: str, arch_hash: str, train_key: str) -> Iterator[None]:
    """Keep a won claim alive while the block trains and stores, then release it."""

    def beat() -> None:
        with db.session_scope(url) as s:
            s.execute(update(TrainingClaim).where(*_where_mine(arch_hash, train_key))
                      .values(heartbeat_at=db.utcnow()))

    try:
        with liveness.beating(beat):
            yield
    finally:
        with db.session_scope(url) as s:
            s.execute(delete(TrainingClaim).where(*_where_mine(arch_hash, train_key)))

