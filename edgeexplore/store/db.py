"""The one SQLAlchemy base and engine factory every edgeexplore table uses.

All our tables live in the same database as Optuna's (default ``sqlite:///edgeexplore.db``), so
a study, its architectures, its latency measurements and its trials travel as one file.
SQLite is opened in WAL mode with a generous busy timeout so that several worker processes and a
reader (``trials list``, optuna-dashboard) can share the file without "database is locked".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from ..errors import EdgeExploreError

T = TypeVar("T")

DEFAULT_URL = "sqlite:///edgeexplore.db"
#: seconds a writer waits for another process's transaction before giving up
BUSY_TIMEOUT_S = 60


def utcnow() -> datetime:
    """Naive UTC "now", the form every timestamp column of ours stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of every edgeexplore table (Optuna keeps its own metadata)."""


def default_url() -> str:
    """``$EDGEEXPLORE_STORAGE`` if set, else ``edgeexplore.db`` in the working directory."""
    return os.environ.get("EDGEEXPLORE_STORAGE", DEFAULT_URL)


def normalise_url(url: str | None) -> str:
    """Accept a SQLAlchemy URL or a bare file path; check a SQLite file can be created."""
    url = url or default_url()
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise EdgeExploreError(f"{url!r} is not a database URL (e.g. sqlite:///edgeexplore.db)") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if Path(parsed.database).expanduser().is_dir():  # SQLite only says "unable to open"
            raise EdgeExploreError(f"{parsed.database} is a folder, not a database file "
                                   "(give a file path, e.g. --storage DIR/edgeexplore.db)")
        folder = Path(parsed.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise EdgeExploreError(f"cannot create the database {parsed.database}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise EdgeExploreError(f"cannot write the database {parsed.database}: folder {folder} is not writable")
    return url


def check_writable(url: str) -> None:
    """Refuse a SQLite file that cannot be written, before a command that writes to it starts:
    SQLite opens it read-only without a word, and the first write then fails deep inside Optuna."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(parsed.database).expanduser()
    if path.is_file() and not os.access(path, os.W_OK):
        raise EdgeExploreError(f"cannot write the database {path}: the file is read-only "
                               "(make it writable, or pass another --storage)")


def shown(url: str) -> str:
    """``url`` as messages print it: any password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


_engines: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    """One engine per URL per process; SQLite gets WAL and a busy timeout. Creates our tables."""
    url = normalise_url(url)
    engine = _engines.get(url)
    if engine is None:
        kwargs = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
        try:
            engine = create_engine(url, **kwargs)
        except NoSuchModuleError:
            raise EdgeExploreError(f"{shown(url)!r} names no database SQLAlchemy knows "
                                   "(e.g. sqlite:///edgeexplore.db)") from None
        except ImportError as e:
            raise EdgeExploreError(f"cannot open the store {shown(url)}: its database driver "
                                   f"{e.name!r} is not installed") from None
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
        # Import every module that defines tables so create_all sees them all.
        _import_table_modules()
        try:
            create_schema(lambda: Base.metadata.create_all(engine))
        except DatabaseError as e:  # e.g. "file is not a database": say so, do not touch it
            engine.dispose()
            raise EdgeExploreError(f"cannot open the store {shown(url)}: {error_reason(e)}") from None
        _engines[url] = engine
    return engine


def error_reason(e: Exception) -> str:
    """The first line of the database's own message (what a user can act on), not SQLAlchemy's."""
    text = str(getattr(e, "orig", None) or e)
    return text.splitlines()[0] if text else type(e).__name__


def create_schema(create: Callable[[], T]) -> T:
    """Run a schema-creating ``create``, tolerating another process creating the same schema.

    Two searches started together on a new file both see a table missing and both issue
    CREATE TABLE (Optuna also both insert its schema version); the loser's "already exists" or
    duplicate version row only means the schema is there now, so look again.
    """
    for _ in range(4):
        try:
            return create()
        except (OperationalError, IntegrityError) as e:
            if not (isinstance(e, IntegrityError) or "already exists" in str(e.orig)):
                raise
    return create()  # the schema is complete by now; a failure here is a real one


def add_once(session: Session, row: Base, **key: object) -> Base:
    """Insert ``row``, or return the row another process stored first under the same unique ``key``.

    A look-up followed by an insert races with other workers doing the same; the insert runs in
    a savepoint so that losing the race rolls back only the insert, not the caller's transaction.
    """
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return session.scalars(select(type(row)).filter_by(**key)).one()
    return row


def _import_table_modules() -> None:
    import importlib

    for name in TABLE_MODULES:
        importlib.import_module(name)


#: Modules that declare tables on :class:`Base`; each registers here so every entry point
#: creates the full schema.
TABLE_MODULES: list[str] = [
    "edgeexplore.store.schema",
    "edgeexplore.latency.cache",
    "edgeexplore.ablation.tables",
    "edgeexplore.store.preset_trainings",
]


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error (nothing half-written)."""
    session = sessionmaker(get_engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
