"""What went wrong when a database server would not let us in, said as one sentence.

SQLite opens a file; a server (PostgreSQL) can be unreachable, refuse the login, or lack the
database. The driver's own text names the cause but buries it after the socket or address it
tried; these sentences lead with what the user has to fix. URLs are shown without their
password (:func:`edgeexplore.store.db.shown`).
"""

from __future__ import annotations

import re

#: PostgreSQL's SQLSTATEs for a refused login and a missing database
_BAD_LOGIN = {"28P01", "28000"}
_NO_DATABASE = "3D000"
#: driver phrases meaning no server answered at the address (socket missing, port closed, ...)
_UNREACHABLE = ("no such file or directory", "connection refused", "could not translate host",
                "timeout expired", "network is unreachable", "no route to host",
                "name or service not known", "temporary failure in name resolution")


def driver_missing(shown_url: str, backend: str, module: str | None) -> str:
    """The sentence for a URL whose database driver is not installed."""
    if backend == "postgresql":
        return (f"cannot open the store {shown_url}: PostgreSQL needs the psycopg driver, "
                "install it with pip install 'edgeexplore[postgres]' and write the URL as "
                "postgresql+psycopg://user@host/database")
    return f"cannot open the store {shown_url}: its database driver {module!r} is not installed"


def connection_problem(shown_url: str, reason: str, sqlstate: str | None) -> str | None:
    """A sentence for a failed connection to a server, or None when it is no such failure."""
    low = reason.lower()
    if sqlstate in _BAD_LOGIN or "password authentication failed" in low \
            or "no password supplied" in low:
        user = re.search(r'user "([^"]+)"', reason)
        who = f" for user {user.group(1)!r}" if user else ""
        return (f"the database server of {shown_url} refused the login{who}: check the user "
                "name and password in the URL")
    if sqlstate == _NO_DATABASE or re.search(r'database "[^"]+" does not exist', reason):
        name = re.search(r'database "([^"]+)"', reason)
        what = f"database {name.group(1)!r}" if name else "the database"
        return (f"{what} does not exist on the server of {shown_url}: create it first "
                "(e.g. createdb)")
    if any(p in low for p in _UNREACHABLE):
        where = re.search(r"connection to server (.*?) failed", reason)
        at = f" ({where.group(1)})" if where else ""
        return (f"cannot reach the database server of {shown_url}{at}: is it running, and are "
                "the host, port or socket folder right?")
    return None
