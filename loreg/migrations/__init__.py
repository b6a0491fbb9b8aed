"""Alembic environment and revisions of the metadata schema (run via ``registry.db.migrate``)."""
