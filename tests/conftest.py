"""Shared fixtures: the real ML-100K files, small files in the real ML-25M/GroupLens formats, temp projects."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from explainrec_core.config import load_config
from explainrec_core.data.fetch import fetch_ml100k, is_fetched

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ml100k_raw(tmp_path_factory) -> Path:
    """Real MovieLens-100K (RecBole atomic files); reuses data/raw/ml-100k when `make data` fetched it."""
    repo_copy = REPO / "data" / "raw" / "ml-100k"
    if is_fetched(repo_copy):
        return repo_copy
    return fetch_ml100k(tmp_path_factory.mktemp("raw") / "ml-100k")


def write_params(root: Path, **sections: dict) -> Path:
    """params.yaml in `root`: the project's settings with some sections' keys replaced."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture
def project(tmp_path, ml100k_raw) -> Path:
    """A temporary project root whose params.yaml reads the real ML-100K and writes under tmp_path."""
    write_params(tmp_path, data={"raw_dir": str(ml100k_raw), "processed_dir": "data/processed"})
    return tmp_path


@pytest.fixture(scope="session")
def processed_ml100k(tmp_path_factory, ml100k_raw) -> Path:
    """Ingested + sampled real ML-100K, built once per session (read-only for tests: copy before changing)."""
    from explainrec_core.pipeline import run_step

    root = tmp_path_factory.mktemp("processed_project")
    write_params(root, data={"raw_dir": str(ml100k_raw), "processed_dir": "data/processed"})
    cfg = load_config(root / "params.yaml")
    for step in ("ingest", "samples", "cold_start_sets"):
        run_step(step, cfg, root)
    return root


@pytest.fixture
def processed_copy(tmp_path, processed_ml100k) -> Path:
    """A writable copy of the processed project."""
    shutil.copytree(processed_ml100k, tmp_path, dirs_exist_ok=True)
    return tmp_path


ML25M_MOVIES = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
2,"American President, The (1995)",Comedy|Drama|Romance
3,Babylon 5,Sci-Fi
4,"Shoah (1985) ",Documentary|War
5,Cosmos (1980),(no genres listed)
6,"Stranger Things (2016-)",Drama|Fantasy|Horror
"""
ML25M_RATINGS = """userId,movieId,rating,timestamp
1,1,4.0,1147880044
1,2,3.5,1147868817
1,3,0.5,1147868828
2,1,5.0,1141415820
2,4,2.0,1141415790
2,5,4.5,1141415900
3,6,3.0,1439474476
3,2,1.0,1439474480
"""
ML25M_TAGS = """userId,movieId,tag,timestamp
1,1,pixar,1147880100
2,1,Pixar,1141415830
2,1,"funny, clever",1141415831
3,2,politics,1439474490
"""
ML25M_LINKS = """movieId,imdbId,tmdbId
1,0114709,862
2,0112346,9087
3,0105946,
4,0090015,1420
5,0081846,
6,4574334,66732
"""


@pytest.fixture
def ml25m_raw(tmp_path) -> Path:
    """A small ML-25M folder with the real files' quirks (quoted commas, no year, no genres, empty tmdbId)."""
    raw = tmp_path / "ml-25m"
    raw.mkdir()
    for name, text in (("movies.csv", ML25M_MOVIES), ("ratings.csv", ML25M_RATINGS), ("tags.csv", ML25M_TAGS),
                       ("links.csv", ML25M_LINKS)):
        (raw / name).write_text(text, encoding="utf-8")
    return raw


def read_table(folder: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(folder / f"{name}.parquet")
