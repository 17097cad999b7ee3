"""Schema versions of our tables: Alembic migrations with a version table of our own.

Every change to our tables is a revision in ``migrations/versions/`` (docs/development.md, "How to
add a table"). Optuna versions its tables with Alembic too, in the same database, under Alembic's
default ``alembic_version`` table; ours is :data:`VERSION_TABLE`, so neither sees the other's.

Opening a database (:func:`check`, then :func:`upgrade`):

* no tables at all, or only Optuna's → ours are created by running every revision;
* ours without a version table (a store written before migrations existed) → revision 0001
  creates only the tables it lacks, as every earlier version did on opening, and is recorded;
  later revisions then run as for any older store;
* a revision this code does not know (a newer edgeexplore wrote it) → refused;
* tables of some other application and none of ours or Optuna's → refused, untouched.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError

from ..errors import EdgeExploreError
from .base import Base, error_reason, shown

#: our Alembic version table (Optuna's own migrations use ``alembic_version``)
VERSION_TABLE = "edgeexplore_alembic_version"
#: the folder Alembic runs (``env.py``, ``versions/``)
MIGRATIONS = Path(__file__).with_name("migrations")
#: PostgreSQL advisory-lock key that queues schema upgrades (any fixed number of our own)
_LOCK_KEY = 0x6564676578706C
#: tables every Optuna RDB storage has: such a database is one we may add our tables to
OPTUNA_TABLES = {"studies", "version_info"}


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for our migrations, running on ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


@cache
def _script(folder: Path) -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(folder))
    return ScriptDirectory.from_config(cfg)


def head() -> str:
    """The newest revision this code knows."""
    return _script(MIGRATIONS).get_current_head()


def known(revision: str) -> bool:
    try:
        return _script(MIGRATIONS).get_revision(revision) is not None
    except CommandError:
        return False


def current(conn: Connection) -> str | None:
    """The revision recorded in the database, or None (never stamped)."""
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}
                                      ).get_current_revision()


def our_tables() -> set[str]:
    return set(Base.metadata.tables) | {VERSION_TABLE}


def _too_new(url: str, revision: str) -> EdgeExploreError:
    return EdgeExploreError(
        f"the store {shown(url)} has schema revision {revision!r}, written by a newer "
        f"edgeexplore than this one (whose newest is {head()!r}): upgrade edgeexplore to use it")


def check(engine: Engine, url: str, *, create: bool) -> str | None:
    """Refuse, before anything is written, a database that is not (or cannot become) our store;
    returns the revision recorded in it."""
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        revision = current(conn) if VERSION_TABLE in tables else None
    if not tables & our_tables():
        if not create:
            raise EdgeExploreError(f"{shown(url)} holds no edgeexplore store (no table of "
                                   "ours): pass --storage of a store edgeexplore wrote")
        if tables and not OPTUNA_TABLES <= tables:
            raise EdgeExploreError(
                f"{shown(url)} is a database of another application (tables "
                f"{', '.join(sorted(tables)[:4])}{', ...' if len(tables) > 4 else ''}) and "
                "edgeexplore will not add its tables to it: pass a new file as --storage")
    if revision is not None and not known(revision):
        raise _too_new(url, revision)
    return revision


def upgrade(engine: Engine, url: str) -> tuple[str | None, str]:
    """Bring our tables to :func:`head`; returns (revision before, revision after)."""
    target = head()
    with engine.connect() as conn:
        before = current(conn)
        if before == target:
            return before, target
        conn.commit()  # end the read: the upgrade below holds the write lock from its start
        try:
            if engine.dialect.name == "sqlite":
                # SQLite's write lock, held to the commit: processes opening a new store at once
                # queue here, and Alembic reads the version again under the lock, so the later
                # ones find the work done. The DDL is transactional: a failure leaves no trace.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.begin()
                if engine.dialect.name == "postgresql":
                    # the same queue on PostgreSQL (hosts starting on a new database at once
                    # would otherwise race to create the same tables): a lock to the commit
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            command.upgrade(config(conn), "head")
            conn.commit()
        except CommandError:  # a newer edgeexplore upgraded it meanwhile
            raise _too_new(url, current(conn) or "?") from None
        except OperationalError as e:
            if "readonly" not in str(e.orig) and "read-only" not in str(e.orig):
                raise
            raise EdgeExploreError(
                f"the store {shown(url)} needs its schema upgraded (to revision {target}) but "
                f"cannot be written here ({error_reason(e)}): run `edgeexplore store upgrade "
                "--storage URL` where it is writable") from None
    return before, target
