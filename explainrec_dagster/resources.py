"""Where the project lives and which settings file to use; tests point it at a temporary copy."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from explainrec_core.config import Config, load_config

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class ExplainRecSettings(dg.ConfigurableResource):
    root: str = str(PROJECT_ROOT)
    """Project root: step paths in params.yaml are relative to it."""
    params: str = "params.yaml"
    """Settings file, relative to `root`."""

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    def config(self) -> Config:
        return load_config(self.root_path / self.params)
