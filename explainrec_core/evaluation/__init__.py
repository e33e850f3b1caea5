"""Scoring and metrics."""
