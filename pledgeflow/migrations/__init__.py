"""Alembic migrations of the pledgeflow schema."""
