"""Ctrl-C that is never lost.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be.
When that is inside a finaliser or a weakref callback (PyTorch and SQLAlchemy run many), CPython
prints "Exception ignored in ..." and carries on, so a trial would train to the end after the
user pressed Ctrl-C. :func:`guard` installs a handler that also remembers the request, and the
long loops call :func:`check` between steps to raise it again where it cannot be swallowed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_requested = False


def _on_sigint(signum: int, frame: Any) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


@contextmanager
def guard() -> Iterator[None]:
    """Install the remembering SIGINT handler for the block (main thread only; else a no-op)."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested = False
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed inside :func:`guard` (cheap: one global)."""
    if _requested:
        raise KeyboardInterrupt
