"""Alembic migrations for the xinshu schema (``xinshu.db.Database.upgrade``)."""
