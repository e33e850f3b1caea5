"""Baseline recommenders (PyTorch), trained on the training period and scored like the LLM: one float per sample.

    from explainrec_core.baselines import BASELINES, TrainingData
    data = TrainingData.from_tables(samples, interactions, items, like_threshold=3.0)
    model = BASELINES["bpr"]()
    model.fit(data, seed=0, valid=samples.filter(pl.col("split") == "valid"))
    scores = model.score(samples.filter(pl.col("split") == "test"))

Models: popularity, bpr (BPR-MF), lightgcn, sasrec, content (all-MiniLM-L6-v2 item texts); one file each,
sharing `base.py`. Each has one setting per evaluation protocol, both tuned on the validation split only: the
config's defaults for AUC, the module's RANKING_CONFIG for ranking (`registry.build_baseline(name, protocol)`).
"""

from explainrec_core.baselines.base import Recommender, TrainingData
from explainrec_core.baselines.registry import BASELINES

__all__ = ["BASELINES", "Recommender", "TrainingData"]
