"""Dagster definitions for ExplainRec: thin wrappers over explainrec_core.pipeline."""
