"""Alembic's entry point for our migrations: they run on the connection the store hands over.

:func:`edgeexplore.store.migrate.upgrade` passes an open connection (holding the write lock) in
``config.attributes["connection"]``; this file only tells Alembic which version table is ours.
"""

from alembic import context

from edgeexplore.store.base import Base
from edgeexplore.store.migrate import VERSION_TABLE

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=Base.metadata,  # what `compare_metadata` checks the migrations against
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite alters most columns by copying the table
)
with context.begin_transaction():
    context.run_migrations()
