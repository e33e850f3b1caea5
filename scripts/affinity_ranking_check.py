"""How well the item tokens' CF evidence alone can rank: NDCG@10 of the fold-in affinity (user . item, the user being
the mean vector of the liked items a list's history shows) for both CF settings of item_features.

    python scripts/affinity_ranking_check.py --params P --root R [--test-root R2]

Validation (what decides): fits the configured CF model with its AUC- and its ranking-protocol setting on the
training period minus rec_prompts' training targets (as item_features does) and prints, per setting, the affinity
AUC of the validation prompts and NDCG@10 over 1,000 validation candidate lists (liked valid targets + 99 unrated
items, built like the test lists). `--test-root`: also the affinity of the stored item_features columns
(collaborative, collaborative_ranking) on that root's LLM-ranked test lists, beside the item-token model's NDCG@10
there (descriptive only: nothing is chosen on it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import polars as pl
import typer

sys.path.insert(0, str(Path(__file__).parent))
from cf_holdout_check import affinity  # noqa: E402

from explainrec_core import paths  # noqa: E402
from explainrec_core.baselines.base import TrainingData  # noqa: E402
from explainrec_core.config import load_config  # noqa: E402
from explainrec_core.evaluation.paired import auc_with_ci  # noqa: E402
from explainrec_core.evaluation.ranking import build_candidates, llm_lists, ranking_metrics  # noqa: E402
from explainrec_core.features.item_features import collaborative_vectors  # noqa: E402
from explainrec_core.steps.data_steps import read_processed  # noqa: E402


def list_scores(lists: pl.DataFrame, vectors: dict[int, np.ndarray], like_threshold: float) -> np.ndarray:
    """(n_lists, n_candidates) fold-in affinity; a candidate without a vector (or a user without one) ranks last."""
    out = []
    for r in lists.iter_rows(named=True):
        liked = [vectors[i] for i, x in zip(r["history_item_ids"], r["history_ratings"], strict=True)
                 if x > like_threshold and i in vectors]
        user = np.mean(liked, axis=0) if liked else None
        out.append([float(user @ vectors[i]) if user is not None and i in vectors else -np.inf
                    for i in r["candidates"]])
    return np.asarray(out)


def main(params: Annotated[Path, typer.Option(help="The profile's params file.")] = Path("params.yaml"),
         root: Annotated[Path, typer.Option(help="Root with samples, interactions, rec_prompts.")] = Path("."),
         test_root: Annotated[Path | None, typer.Option(help="Root with item features + item-token ranking.")] = None,
         lists: Annotated[int, typer.Option(help="Validation candidate lists.")] = 1000) -> None:
    cfg = load_config(params)
    threshold = cfg.samples.like_threshold
    samples, interactions = read_processed(cfg, root, "samples"), read_processed(cfg, root, "interactions")
    data = TrainingData.from_tables(samples, interactions, read_processed(cfg, root, "items"), threshold)
    prompts = pl.read_parquet(root / paths.REC_PROMPTS).join(
        samples.select("sample_id", "history_item_ids", "history_ratings"), on="sample_id", how="left")
    held_out = prompts.filter(pl.col("set") == "train").select("user_id", "item_id")
    valid = prompts.filter(pl.col("set") == "valid").unique("sample_id").sort("sample_id")
    valid_lists = build_candidates(samples, interactions, split="valid", max_positives=lists, seed=0)
    print(f"{cfg.multimodal.collaborative_model}, {root}: validation ({valid.height} prompts, "
          f"{valid_lists.height} lists)")
    for protocol in ("auc", "ranking"):
        vectors, _ = collaborative_vectors(cfg, data, held_out, protocol)
        auc = auc_with_ci(valid.select("sample_id", "label").with_columns(
            score=pl.Series(affinity(valid, vectors, threshold))))
        ndcg = ranking_metrics(list_scores(valid_lists, vectors, threshold))["ndcg@10"]
        print(f"  {protocol:7s} setting: prompt AUC {auc.text()}  list NDCG@10 {ndcg:.3f}")
    if test_root is None:
        return
    features = pl.read_parquet(paths.resolve(paths.ITEM_FEATURES, cfg, test_root))
    ranked = pl.read_parquet(test_root / paths.ITEM_TOKEN_RANKING)
    test_lists = llm_lists(pl.read_parquet(test_root / paths.RANKING_CANDIDATES), ranked.height).join(
        ranked, on="sample_id").sort("sample_id")
    llm = ranking_metrics(np.asarray(test_lists["scores"].to_list()))["ndcg@10"]
    print(f"{test_root}: the item-token model's {test_lists.height} test lists, LLM NDCG@10 {llm:.3f}")
    for column in ("collaborative", "collaborative_ranking"):
        stored = features.filter(pl.col(f"has_{column}")).select("item_id", column)
        vectors = {i: np.asarray(v, np.float32) for i, v in stored.iter_rows()}
        print(f"  affinity of {column:21s} alone: NDCG@10 "
              f"{ranking_metrics(list_scores(test_lists, vectors, threshold))['ndcg@10']:.3f}")


if __name__ == "__main__":
    typer.run(main)
