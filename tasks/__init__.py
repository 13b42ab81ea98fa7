"""Thin Prefect tasks over pledgeflow's plain functions."""
