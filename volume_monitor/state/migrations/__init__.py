"""The state store's Alembic migrations (``env.py`` and ``versions/``), run by
:mod:`volume_monitor.state.migrate`. Importing this package runs nothing."""
