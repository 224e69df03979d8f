"""The one Alembic chain for both dialects (run through ``labelhub.core.db.upgrade``)."""
