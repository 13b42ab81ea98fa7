"""Prefect flows: one per file, each only wiring tasks."""
