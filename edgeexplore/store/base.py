"""What every table and message of the store shares: the declarative base, timestamps, and how a
database URL and a database error are shown to a user. Below both the engine (``db``) and the
migrations (``migrate``), which both need it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> datetime:
    """Naive UTC "now", the form every timestamp column of ours stores."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of every edgeexplore table (Optuna keeps its own metadata)."""


def shown(url: str) -> str:
    """``url`` as messages print it: any password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # unparsable: still hide what looks like user:password@
        return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def error_reason(e: Exception) -> str:
    """The first line of the database's own message (what a user can act on), not SQLAlchemy's."""
    text = str(getattr(e, "orig", None) or e)
    return text.splitlines()[0] if text else type(e).__name__
