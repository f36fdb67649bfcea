"""Alembic's entry point for the state store. It runs only through
:mod:`volume_monitor.state.migrate`, which passes the open connection (already in the
transaction that holds the upgrade lock) as ``config.attributes["connection"]``."""

from alembic import context

from volume_monitor.state.schema import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "the state store's migrations run through volume_monitor.state.migrate, "
        "which passes an open connection"
    )
context.configure(connection=connection, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
