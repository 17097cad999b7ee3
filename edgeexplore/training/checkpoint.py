"""Training checkpoints: written atomically every epoch, loadable with ``weights_only=True``.

A checkpoint holds everything a bit-for-bit resume needs (model, EMA, optimizer, scheduler,
grad scaler, epoch, update count, every rank's RNG states) plus what makes it self-describing
(the ArchConfig, the recipe, the data spec), so ``evaluate`` needs nothing else.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import EdgeExploreError
from ..files import atomic_torch_save

FORMAT = "edgeexplore-train/1"
LAST = "last.pt"
BEST = "best.pt"


def rng_state() -> dict[str, Any]:
    """This process's RNG states in types ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(obj: dict[str, Any], path: Path) -> None:
    """Write then rename: a run killed mid-write keeps the previous epoch's file intact."""
    try:
        atomic_torch_save(obj, path)
    except OSError as exc:
        raise EdgeExploreError(f"cannot write checkpoint {path}: {exc.strerror}") from None


def load(path: Path) -> dict[str, Any]:
    """A checkpoint file as a dict; a missing or unreadable file is one sentence."""
    if not path.is_file():
        raise EdgeExploreError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError, KeyError,
            IndexError) as exc:
        # a text file read as a pickle fails on its first byte as a KeyError ("101" for an "e")
        reason = ("not a checkpoint file" if isinstance(exc, (KeyError, IndexError)) else
                  str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise EdgeExploreError(f"cannot read {path} as a PyTorch checkpoint: {reason}") from None
    if not isinstance(obj, dict):
        raise EdgeExploreError(f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def is_training_checkpoint(obj: dict[str, Any]) -> bool:
    return obj.get("format") == FORMAT
