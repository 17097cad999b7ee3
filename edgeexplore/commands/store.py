"""``edgeexplore store version|upgrade``: the schema revision of a store, and bringing it up to date.

Any command upgrades an older store of ours when it opens it; ``upgrade`` does only that (e.g.
on a writable copy of a store that is read-only where it is used), and ``version`` only looks.
"""

from __future__ import annotations

import click

from ..store import db, migrate
from .options import storage_option


@click.group("store")
def store_group() -> None:
    """The store's schema revision (Alembic), and its upgrade to this edgeexplore's."""


@store_group.command("version")
@storage_option()
def version_cmd(storage: str | None) -> None:
    """Print the store's schema revision and this edgeexplore's, changing nothing."""
    url = db.normalise_url(storage)
    revision, head = db.probe(url, create=False), migrate.head()
    if revision == head:
        state = "up to date"
    else:
        state = "any command upgrades it, or `edgeexplore store upgrade`"
    click.echo(f"{db.shown(url)}: schema revision {revision or 'none (written before migrations)'}"
               f", this edgeexplore's is {head}: {state}")


@store_group.command("upgrade")
@storage_option()
def upgrade_cmd(storage: str | None) -> None:
    """Upgrade an existing store's tables to this edgeexplore's schema revision."""
    url = db.normalise_url(storage)
    before = db.probe(url, create=False)
    db.open_store(url, create=False)
    head = migrate.head()
    if before == head:
        click.echo(f"{db.shown(url)} is already at schema revision {head}")
    else:
        click.echo(f"{db.shown(url)} upgraded from schema revision "
                   f"{before or 'none (written before migrations)'} to {head}")


COMMANDS = [store_group]
