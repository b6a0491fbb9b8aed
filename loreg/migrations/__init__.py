"""Alembic environment and revisions of the metadata schema (run via ``loreg.db.migrate``)."""
