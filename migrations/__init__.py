"""Alembic migrations: one revision per schema change, applied by `hubmeter db upgrade`."""
