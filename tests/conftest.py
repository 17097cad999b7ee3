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


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server for the session (tests/pgserver.py), or skip with why."""
    import pgserver

    if pgserver.bindir() is None:
        pytest.skip("no PostgreSQL programs here (pg_config --bindir finds no initdb/pg_ctl)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (uv sync installs it with the dev group)")
    server = pgserver.start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A new empty PostgreSQL database on the session's server (its SQLAlchemy URL)."""
    return pg_server.create_database()
