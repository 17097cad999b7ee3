"""When a process that owns a row (a running trial, a training claim) counts as dead.

A process beats a heartbeat into its row every :func:`heartbeat_s` seconds. It is dead when it
is gone from this host, or when its heartbeat has been silent for longer than :func:`grace_s`
(the only sign across hosts: a lost machine, a SIGKILL, the OOM killer).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from ..errors import ConfigError
from . import db

#: seconds between heartbeats, and how long one may be silent before its owner is dead
#: (EDGEEXPLORE_GRACE_S overrides the grace; short ones are for tests and fast failover)
HEARTBEAT_S = 10
GRACE_S = 120


def grace_s() -> float:
    raw = os.environ.get("EDGEEXPLORE_GRACE_S")
    if raw is None:
        return float(GRACE_S)
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError(f"EDGEEXPLORE_GRACE_S={raw!r} is not a positive number of seconds")
    return value


def heartbeat_s() -> float:
    # several beats fit in the grace, so one late beat is not taken for a death
    return min(float(HEARTBEAT_S), grace_s() / 4)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_dead(hostname: str | None, pid: int | None, heartbeat_at: datetime | None) -> bool:
    """Whether the owner of a row is dead (never this process itself)."""
    here = hostname == socket.gethostname()
    if here and pid == os.getpid():
        return False
    silent = heartbeat_at is None or db.utcnow() - heartbeat_at > timedelta(seconds=grace_s())
    return silent or (here and not pid_alive(pid))


@contextmanager
def beating(beat: Callable[[], None]) -> Iterator[None]:
    """Call ``beat`` every :func:`heartbeat_s` seconds, in a daemon thread, while the block runs.

    A beat that fails is skipped: a missed one only risks being taken for dead a little early.
    """
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(heartbeat_s()):
            try:
                beat()
            except Exception:  # noqa: BLE001, S110 - the next beat tries again
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
