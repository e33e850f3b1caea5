"""Shared fixtures: the real ML-100K files, small files in the real ML-25M/GroupLens formats, temp projects."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from explainrec_core.config import load_config
from explainrec_core.data.fetch import fetch_ml100k, is_fetched

REPO = Path(__file__).resolve().parents[1]

# `make test`'s xdist workers take a test file at a time, in collection order (--no-loadscope-reorder). test_dvc
# (every DVC stage in its own process: 740 of the suite's 1,480 s on 2 cores, 2026-12-07) goes first, so one worker
# runs it while the other runs everything else; collected last, it would run alone at the end.
LONGEST_FIRST = ("test_dvc.py",)


def pytest_configure(config: pytest.Config) -> None:
    """Each of `make test`'s xdist workers, and every process it starts (DVC stages, Dagster steps), gets its share
    of the cores: two workers with two OpenMP threads each on two cores make spin-waiting threads fight, and
    tiny-model steps run 50x slower. Runs before the test modules (and torch) are imported."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(share))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


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
    # The demo holds the newest ratings back as a stream to replay; tests that want one say so (test_incoming).
    params["data"]["stream_holdout"] = 0.0
    for section, values in sections.items():
        params[section].update(values)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def fast_llm_params(base_dir: Path) -> dict:
    """Settings that run both tuning stages and the evaluation in seconds (tiny model, a few samples)."""
    return {
        "model": {"base": str(base_dir)},
        "alpaca": {"max_samples": 8},
        "alpaca_training": {"epochs": 1, "batch_size": 4, "cutoff": 384, "checkpoint_every": 1, "warmup_steps": 0},
        "rec_prompts": {"train_samples": 8, "valid_samples": 8, "test_samples": 16, "cold_start_samples": 8},
        "llm_training": {"epochs": 1, "batch_size": 4, "grad_accum": 1, "eval_every": 1, "patience": 0,
                         "warmup_steps": 0, "checkpoint_every": 1},
        "baselines": {"methods": ["popularity", "bpr"], "seeds": [0, 1], "hyperparameters": {"bpr": {"epochs": 2}},
                      "ranking_hyperparameters": {"bpr": {"epochs": 2}}},
        "ranking": {"max_positives": 20, "llm_positives": 2},
        "attribution": {"explain_samples": 4, "max_new_tokens": 8},
        "meta": {"orders": ["none", "first"], "epochs": 1},
        "cross_domain": {"methods": []},  # the baselines above, fitted on the source domain too
        "evaluation": {"bootstrap_resamples": 200},
    }


@pytest.fixture
def project(tmp_path, ml100k_raw, tiny_llm_dir) -> Path:
    """A temporary project root: real ML-100K, the tiny LLM, outputs under tmp_path."""
    write_params(tmp_path, data={"raw_dir": str(ml100k_raw), "processed_dir": "data/processed"},
                 **fast_llm_params(tiny_llm_dir))
    return tmp_path


@pytest.fixture(scope="session")
def processed_ml100k(tmp_path_factory, ml100k_raw) -> Path:
    """Ingested + sampled real ML-100K, built once per session (read-only for tests: copy before changing)."""
    from explainrec_core.pipeline import run_step

    root = tmp_path_factory.mktemp("processed_project")
    write_params(root, data={"raw_dir": str(ml100k_raw), "processed_dir": "data/processed"})
    cfg = load_config(root / "params.yaml")
    for step in ("ingest", "samples", "cold_start_sets", "alpaca_data"):
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


# --- LLM fixtures: the real SmolLM2 tokenizer with a tiny 2-layer LLaMA, so training tests run in seconds ---

@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct as a Hugging Face folder (converted once into the cache by set-up)."""
    from explainrec_core.config import ModelConfig
    from explainrec_core.models.base_model import embedded_model_dir

    return embedded_model_dir(ModelConfig())


@pytest.fixture(scope="session")
def tokenizer(smollm2_dir):
    from explainrec_core.models.base_model import load_tokenizer

    return load_tokenizer(smollm2_dir)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory, tokenizer) -> Path:
    """A 2-layer LLaMA with SmolLM2's vocabulary and tokenizer, saved as a local base-model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny_llm")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def cpu_one_thread(monkeypatch):
    """Tiny-model training on the CPU, one thread, from a clean accelerate state."""
    import torch
    from accelerate.state import AcceleratorState

    # CPU even on a GPU machine: the training-engine equalities (resume, accumulation) are fp32 ones, not bf16.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # accelerate keeps one process-wide state that refuses a change of device or precision: start clean.
    AcceleratorState._reset_state(reset_partial_state=True)
    # These models are tiny: a second intra-op thread buys nothing, and when another process competes for the
    # two cores, OpenMP spin-waiting makes each step 50x slower (0.75 s instead of 0.015 s).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
    AcceleratorState._reset_state(reset_partial_state=True)
