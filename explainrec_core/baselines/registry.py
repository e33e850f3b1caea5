"""Every baseline by name, built with its default (valid-tuned) hyper-parameters."""

from __future__ import annotations

from collections.abc import Callable

from explainrec_core.baselines.base import Recommender
from explainrec_core.baselines.bpr import BPR
from explainrec_core.baselines.content import ContentBased
from explainrec_core.baselines.lightgcn import LightGCN
from explainrec_core.baselines.popularity import Popularity
from explainrec_core.baselines.sasrec import SASRec

BASELINES: dict[str, Callable[[], Recommender]] = {
    "popularity": Popularity,
    "bpr": BPR,
    "lightgcn": LightGCN,
    "sasrec": SASRec,
    "content": ContentBased,
}
