"""Where the project lives and which settings file to use; tests point it at a temporary copy."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from explainrec_core.config import Config, load_config

PROJECT_ROOT = Path(__file__).resolve().parents[1]


ENV_ROOT, ENV_PARAMS = "EXPLAINREC_ROOT", "EXPLAINREC_PARAMS"
"""Environment overrides of the defaults, for a deployment (or a test) whose project is not this checkout."""


class ExplainRecSettings(dg.ConfigurableResource):
    root: str = os.environ.get(ENV_ROOT, str(PROJECT_ROOT))
    """Project root: step paths in params.yaml are relative to it (EXPLAINREC_ROOT overrides the default)."""
    params: str = os.environ.get(ENV_PARAMS, "params.yaml")
    """Settings file, relative to `root` (EXPLAINREC_PARAMS overrides the default)."""

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    def config(self) -> Config:
        return load_config(self.root_path / self.params)
