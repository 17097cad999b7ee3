"""Files written so that a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``: a process
    killed mid-write leaves the previous file intact, and concurrent readers (other workers) never
    read a half-written one."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
