"""The knowledge modality: the KB's evidence about a (user, item) pair against a hand computation, leave-one-out
for the pairs the KB counted, fallbacks, and its path through the feature bank into the fusion."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import torch

from explainrec_core.features.feature_bank import USER_SLOT, FeatureBank, FeatureError, SlotRequest
from explainrec_core.features.fusion import FusionSpec, ModalityFusion
from explainrec_core.features.knowledge_evidence import COUNT_SCALE, KnowledgeEvidence
from explainrec_core.knowledge import cross_domain, demographic

M, K = 3.0, 2.0


def _users() -> pl.DataFrame:
    return pl.DataFrame({"user_id": [1, 2, 3, 4], "gender": ["M", "F", None, "F"]},
                        schema={"user_id": pl.Int64, "gender": pl.String})


def _items() -> pl.DataFrame:
    return pl.DataFrame({"item_id": [10, 11, 12], "title": ["a", "b", "c"], "year": [1995, 1987, None],
                         "genres": [["Drama"], ["Drama", "Comedy"], []]},
                        schema={"item_id": pl.Int64, "title": pl.String, "year": pl.Int32,
                                "genres": pl.List(pl.String)})


def _ratings(flip: tuple[int, int] | None = None) -> pl.DataFrame:
    rows = [(1, 10, 1), (1, 11, 0), (2, 10, 1), (2, 11, 1), (3, 10, 0), (4, 11, 1), (4, 10, 0)]
    rows = [(u, i, 1 - y if (u, i) == flip else y) for u, i, y in rows]
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "label": pl.Int64}, orient="row")


WEIGHTS = {"all": 0.6, "gender": 0.4}


def _evidence(ratings: pl.DataFrame, leave_one_out: bool = True) -> tuple[KnowledgeEvidence, demographic.GroupTables]:
    groups = demographic.user_groups(_users(), (18,))
    attrs = cross_domain.item_domains(_items()).rename({"domain": "attribute"})
    tables = demographic.estimate(ratings, groups, attrs, [10, 11, 12], K)
    counted = ratings if leave_one_out else ratings.clear()
    return KnowledgeEvidence(tables.items, groups, WEIGHTS, tables.global_rate, M, counted), tables


def _rate(tables, group_type: str, value: str, item: int, drop: tuple[int, int] = (0, 0)) -> float:
    row = tables.items.filter((pl.col("group_type") == group_type) & (pl.col("group_value") == value)
                              & (pl.col("item_id") == item)).row(0, named=True)
    return (row["likes"] - drop[1] + M * row["prior"]) / (row["n"] - drop[0] + M)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_an_uncounted_pair_reads_the_kb_rates_as_they_are():
    ev, tables = _evidence(_ratings())
    # user 2 (gender f) and item 12, which nobody rated: the KB's rates, weights renormalised over both types
    p_all, p_f = _rate(tables, "all", "all", 12), _rate(tables, "gender", "f", 12)
    mixed = (0.6 * p_all + 0.4 * p_f) / 1.0
    assert ev.score(2, 12) == pytest.approx(mixed)
    vec, present = ev.vectors([2], [12])
    base = _logit(tables.global_rate)
    assert bool(present[0]) and ev.dim == 4
    assert vec[0].tolist() == pytest.approx([_logit(mixed) - base, _logit(p_all) - base, _logit(p_f) - base, 0.0],
                                            abs=1e-5)


def test_uncounted_pairs_score_as_the_knowledge_base_itself():
    """The evidence re-implements eq. 5's mix in numpy (per pair, with leave-one-out); for pairs the KB did not count
    it must equal the KB's own score, fallbacks included (no demographics, unknown user, unknown item)."""
    ev, tables = _evidence(_ratings())
    rows = pl.DataFrame({"user_id": [2, 3, 99, 1, 4], "item_id": [12, 11, 11, 999, 12]})
    kb = demographic.score(rows, demographic.user_groups(_users(), (18,)), tables.item_rates(M), WEIGHTS,
                           tables.global_rate)
    assert [ev.score(u, i) for u, i in rows.iter_rows()] == pytest.approx(kb["p"].to_list())


def test_a_counted_pair_leaves_its_own_rating_out():
    ev, tables = _evidence(_ratings())
    # user 1 (m) rated item 10 (liked): all and gender=m counts both hold it
    p_all, p_m = _rate(tables, "all", "all", 10, (1, 1)), _rate(tables, "gender", "m", 10, (1, 1))
    assert ev.score(1, 10) == pytest.approx(0.6 * p_all + 0.4 * p_m)
    vec, _ = ev.vectors([1], [10])
    assert float(vec[0, -1]) == pytest.approx(math.log1p(4 - 1) / COUNT_SCALE, abs=1e-6)  # 4 ratings, 1 left out


def test_flipping_a_training_label_moves_its_own_evidence_only_through_the_genre_prior():
    """Without leave-one-out a training sample's evidence carries its own label through the item counts; with it,
    only through the genre-level prior q_g(i) (documented residual), so flipping the label moves the sample's own
    evidence by exactly what the flip does to the priors, and much less than without leave-one-out."""
    def own_change(leave_one_out: bool) -> float:
        before, _ = _evidence(_ratings(), leave_one_out)
        after, _ = _evidence(_ratings(flip=(2, 10)), leave_one_out)
        return after.score(2, 10) - before.score(2, 10)

    _, flipped = _evidence(_ratings(flip=(2, 10)))
    _, tables = _evidence(_ratings())
    # leave-one-out after the flip: counts without user 2's rating are the same as before; priors moved
    expected = sum(w * (_rate(flipped, t, v, 10, (1, 0)) - _rate(tables, t, v, 10, (1, 1)))
                   for t, v, w in (("all", "all", 0.6), ("gender", "f", 0.4)))
    assert own_change(True) == pytest.approx(expected)
    assert own_change(False) < -0.2 and abs(own_change(True)) < abs(own_change(False)) / 2


def test_fallbacks_unknown_demographics_unknown_items_and_no_user():
    ev, tables = _evidence(_ratings())
    # user 3 has no gender: `all` alone, and its gender entry repeats the `all` rate
    vec, _ = ev.vectors([3], [11])
    assert ev.score(3, 11) == pytest.approx(_rate(tables, "all", "all", 11))
    assert float(vec[0, 1]) == pytest.approx(float(vec[0, 2]))
    # a user no table knows: `all` alone too; an item outside the catalogue: the global rate; no user: masked
    assert ev.score(99, 11) == pytest.approx(_rate(tables, "all", "all", 11))
    assert ev.score(1, 999) == pytest.approx(tables.global_rate)
    vecs, present = ev.vectors([None, 1], [10, 10])
    assert present.tolist() == [False, True] and vecs[0].abs().sum() == 0
    assert np.isfinite(vecs.numpy()).all()


def test_counts_from_another_period_are_refused():
    _, tables = _evidence(_ratings())
    # ratings the KB never counted (item 12 has none in it) given as the ones to leave out
    stranger = KnowledgeEvidence(tables.items, demographic.user_groups(_users(), (18,)), WEIGHTS, 0.5, M,
                                 pl.DataFrame({"user_id": [1], "item_id": [12], "label": [1]}))
    with pytest.raises(ValueError, match="different periods"):
        stranger.vectors([1], [12])


def _features() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({"item_id": [10, 11, 12], "text": [rng.normal(size=4).tolist() for _ in range(3)],
                         "collaborative": [rng.normal(size=3).tolist() for _ in range(3)]})


def test_the_feature_bank_feeds_knowledge_to_the_fusion_per_user():
    ev, _ = _evidence(_ratings())
    with pytest.raises(FeatureError, match="knowledge base"):
        FeatureBank(_features(), ["text", "knowledge"])
    bank = FeatureBank(_features(), ["text", "collaborative", "knowledge"], knowledge=ev)
    assert bank.modality_dims == {"text": 4, "collaborative": 3, "knowledge": 4}
    requests = [SlotRequest(items=(USER_SLOT, 10, 12), liked=(10,), user=2),
                SlotRequest(items=(10, 12), liked=(10,))]  # no user: knowledge masked
    inputs = bank.slot_inputs(requests)
    k = bank.modalities.index("knowledge")
    assert inputs["present"][:, k].tolist() == [True, True, False, False]
    expected, _ = ev.vectors([2, 2], [10, 12])
    assert torch.equal(inputs["features"]["knowledge"][:2], expected)
    spec = FusionSpec(modality_dims=bank.modality_dims, context_dim=bank.context_dim, fusion_dim=8, hidden_size=16,
                      token_norm=1.0, user_token=True, features_sha256="x")
    _, weights = ModalityFusion(spec).item_tokens(inputs["features"], inputs["present"], inputs["context"],
                                                  inputs["has_context"])
    assert weights[2:, k].tolist() == [0.0, 0.0] and bool((weights[:2, k] > 0).all())
