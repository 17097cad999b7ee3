"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# The suite runs on 2 cores beside other work; one intra-op thread keeps timings sane.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (reference fixtures, CIFAR-10), or skip."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (reference fixtures and data live there)")
    return SHARED
