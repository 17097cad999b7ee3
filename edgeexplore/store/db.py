"""The one SQLAlchemy base every edgeexplore table uses, and :class:`Store`: an opened store.

All our tables live in the same database as Optuna's (default ``sqlite:///edgeexplore.db``), so
a study, its architectures, its latency measurements and its trials travel as one file.
SQLite is opened in WAL mode with a generous busy timeout so that several worker processes and a
reader (``trials list``, optuna-dashboard) can share the file without "database is locked".
:func:`open_store` also brings the schema to this version's (:mod:`edgeexplore.store.migrate`).
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker

from ..errors import EdgeExploreError
from . import migrate, servers
from .base import Base, error_reason, shown, utcnow  # noqa: F401 - the store's one import point

T = TypeVar("T")

DEFAULT_URL = "sqlite:///edgeexplore.db"
#: seconds a writer waits for another process's transaction before giving up
BUSY_TIMEOUT_S = 60
#: seconds to wait for a database server to answer before saying it cannot be reached
CONNECT_TIMEOUT_S = 10


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
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise EdgeExploreError(f"{shown(url)!r} is not a database URL (e.g. sqlite:///edgeexplore.db "
                               "or postgresql+psycopg://user@host/database)") from None
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


def refuse_overwriting(output: str | Path, url: str | None) -> None:
    """Refuse to write an output file (an export, a saved config) over the SQLite store ``url``
    it was read from: the one copy of the results would be gone."""
    parsed = make_url(normalise_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    store_path = Path(parsed.database).expanduser()
    try:
        same = Path(output).expanduser().exists() and os.path.samefile(output, store_path)
    except OSError:
        return
    if same:
        raise EdgeExploreError(f"{output} is the database the trials are read from: write to "
                               "another file")


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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _new_engine(url: str) -> Engine:
    """An engine for ``url``, without our SQLite pragmas (:func:`open_store` adds them)."""
    kwargs = {}
    parsed = make_url(url)
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
    elif parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # a host that drops packets would otherwise hang for the OS's TCP timeout (minutes)
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(url, **kwargs)
    except NoSuchModuleError:
        raise EdgeExploreError(f"{shown(url)!r} names no database SQLAlchemy knows "
                               "(e.g. sqlite:///edgeexplore.db)") from None
    except ImportError as e:
        raise EdgeExploreError(servers.driver_missing(shown(url), parsed.get_backend_name(),
                                                      e.name)) from None
    return engine


class Store:
    """An opened store: its URL, its engine, and transactions on it.

    Get one from :func:`open_store`, which has checked that the database holds our tables at the
    schema version this code writes.
    """

    def __init__(self, url: str, engine: Engine) -> None:
        self.url, self.engine = url, engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Store({shown(self.url)!r})"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any error (nothing half-written)."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()


_stores: dict[str, Store] = {}


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """The store at ``url`` (default :func:`default_url`), its schema brought up to date.

    ``create=True`` (commands that write) makes our tables in a new or empty database, or beside
    Optuna's; ``create=False`` (commands that only read) refuses a missing file or a database
    without our tables, leaving it untouched. Either way a database of another application is
    refused, an older store of ours is upgraded, and a newer one is refused, each in one sentence.
    One :class:`Store` per URL per process, found again by the URL as given (every transaction
    of :func:`session_scope` asks) without checking it again.
    """
    given = url or default_url()
    found = _stores.get(given)
    if found is not None:
        return found
    url = normalise_url(given)
    found = _stores.get(url)
    if found is not None:
        _stores[given] = found
        return found
    # One engine: it checks the database without pragmas (a file that is not ours must stay
    # byte-identical, not even a WAL switch), then takes them on for every later connection.
    engine = _new_engine(url)
    try:
        revision = _check(engine, url, create=create)
        if url.startswith("sqlite"):
            event.listen(engine, "connect", _sqlite_pragmas)
            engine.dispose()  # the probing connection had none: open the next ones afresh
        if revision != migrate.head():
            migrate.upgrade(engine, url)
    except BaseException:
        engine.dispose()
        raise
    store = _stores[url] = _stores[given] = Store(url, engine)
    return store


def close_all() -> None:
    """Close every store this process opened (a benchmark letting its temporary files go)."""
    for opened in set(_stores.values()):
        opened.engine.dispose()
    _stores.clear()


def probe(url: str, *, create: bool) -> str | None:
    """Check, without writing anything, that ``url`` is (``create``: or can become) our store;
    returns the schema revision recorded in it (None: none yet)."""
    engine = _new_engine(url)
    try:
        return _check(engine, url, create=create)
    finally:
        engine.dispose()


def _check(engine: Engine, url: str, *, create: bool) -> str | None:
    """:func:`probe` on an engine without pragmas."""
    parsed = make_url(url)
    if not create and parsed.get_backend_name() == "sqlite" and parsed.database not in (
            None, "", ":memory:") and not Path(parsed.database).expanduser().is_file():
        raise EdgeExploreError(f"no database at {Path(parsed.database).expanduser()} "
                               "(run `edgeexplore search` first, or pass --storage)")
    try:
        return migrate.check(engine, url, create=create)
    except DatabaseError as e:  # e.g. "file is not a database": say so, do not touch it
        sqlstate = getattr(getattr(e, "orig", None), "sqlstate", None)
        raise EdgeExploreError(servers.connection_problem(shown(url), error_reason(e), sqlstate)
                               or f"cannot open the store {shown(url)}: {error_reason(e)}") from None


def get_engine(url: str | None = None) -> Engine:
    """The engine of :func:`open_store` ``(url)`` (creating our tables if need be)."""
    return open_store(url).engine


#: PostgreSQL advisory-lock key that queues the creation of Optuna's tables (its own number:
#: :mod:`.migrate` holds another while it upgrades ours, and the two may nest in one process)
_OPTUNA_SCHEMA_LOCK = 0x6F7074756E61


def create_schema(url: str, create: Callable[[], T]) -> T:
    """Run ``create`` (which makes Optuna's schema at ``url`` if missing), tolerating other
    processes doing the same at once.

    On PostgreSQL, hosts starting on a new database at once would race inside Optuna's
    CREATE TABLEs (PostgreSQL then reports 'type "alembic_version" already exists'), so they
    queue on an advisory lock held for the duration. On SQLite the loser of the race sees
    "already exists" or a duplicate schema-version row, which only means another process is
    creating the schema: look again after a pause, until the busy timeout. The pause matters:
    on a loaded CI machine a loser that retried five times at once lost all five while the
    winner was still at work.
    """
    if make_url(url).get_backend_name() == "postgresql":
        engine = _new_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _OPTUNA_SCHEMA_LOCK})
                try:
                    return create()
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"),
                                 {"key": _OPTUNA_SCHEMA_LOCK})
        finally:
            engine.dispose()
    deadline, pause = time.monotonic() + BUSY_TIMEOUT_S, 0.05
    while True:
        try:
            return create()
        except (OperationalError, IntegrityError) as e:
            lost_race = isinstance(e, IntegrityError) or "already exists" in str(e.orig)
            if not lost_race or time.monotonic() > deadline:
                raise  # a real failure, or a winner that never finished
        time.sleep(pause * (1 + random.random()))  # jittered: the losers do not retry in step
        pause = min(pause * 2, 1.0)


def optuna_rdb(url: str, *, create: bool = True, **options: Any) -> Any:
    """Optuna's RDB storage on ``url`` with our SQLite busy timeout (``options``: more of
    ``RDBStorage``'s). ``create`` makes Optuna's tables where missing, beside another process
    doing the same; without it a database lacking them fails on first use."""
    import optuna  # only the commands that reach Optuna's tables pay for importing it

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_S}
    with warnings.catch_warnings():  # heartbeats are "experimental" to Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return create_schema(url, lambda: optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, skip_table_creation=not create, **options))


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


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction on :func:`open_store` ``(url)``: committed on success, else rolled back."""
    with open_store(url).session() as session:
        yield session
