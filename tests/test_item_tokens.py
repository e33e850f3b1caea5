"""Item tokens: the fusion's attention, the feature bank, the slotted prompt, soft-token injection and scoring."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from explainrec_core.evaluation.prefix_scoring import score_after_prefix
from explainrec_core.evaluation.scoring import score_yes
from explainrec_core.features.feature_bank import USER_SLOT, FeatureBank, FeatureError, SlotRequest
from explainrec_core.features.fusion import FusionError, FusionSpec, ModalityFusion, load_fusion, save_fusion
from explainrec_core.features.item_prompts import (
    SLOT,
    add_slot_token,
    slotted_parts,
    slotted_rec_prompt,
    slotted_suffix,
    strip_slots,
)
from explainrec_core.features.item_token_model import ItemTokenLM, scoring_embedder
from explainrec_core.models.base_model import answer_token_ids
from explainrec_core.prompts import RESPONSE_MARKER, build_rec_prompt

MODALITIES = ["text", "attributes", "collaborative", "affinity"]


def features_frame(n_items: int = 12, seed: int = 0, cf_missing: tuple[int, ...] = (11,)) -> pl.DataFrame:
    """Item ids 1..n with random text/attribute/collaborative vectors; items in `cf_missing` lack a CF vector."""
    rng = np.random.default_rng(seed)
    ids = list(range(1, n_items + 1))
    text = rng.normal(size=(n_items, 6)).astype(np.float32)
    attrs = rng.normal(size=(n_items, 5)).astype(np.float32)
    cf = rng.normal(size=(n_items, 4)).astype(np.float32)
    return pl.DataFrame({
        "item_id": pl.Series(ids, dtype=pl.Int64),
        "text": pl.Series([v.tolist() for v in text], dtype=pl.List(pl.Float32)),
        "attributes": pl.Series([v.tolist() for v in attrs], dtype=pl.List(pl.Float32)),
        "collaborative": pl.Series([None if i in cf_missing else v.tolist() for i, v in zip(ids, cf, strict=True)],
                                   dtype=pl.List(pl.Float32)),
        "image": pl.Series([None] * n_items, dtype=pl.List(pl.Float32)),
    }).with_columns(*[pl.col(m).is_not_null().alias(f"has_{m}")
                      for m in ("text", "attributes", "collaborative", "image")])


def make_fusion(bank: FeatureBank, hidden: int = 16, user_token: bool = True, sha: str = "x") -> ModalityFusion:
    torch.manual_seed(0)
    return ModalityFusion(FusionSpec(bank.modality_dims, bank.context_dim, 8, hidden, 1.0, user_token, sha))


def test_fusion_weights_sum_to_one_over_present_modalities_and_masked_get_zero():
    bank = FeatureBank(features_frame(), [*MODALITIES, "image"])
    assert bank.off == ["image"] and bank.modalities == MODALITIES  # no image vectors: off, and said so
    fusion = make_fusion(bank)
    # user 1 liked items 1 and 2; item 11 has no CF vector (so no collaborative and no affinity)
    inputs = bank.slot_inputs([SlotRequest(items=(3, 11), liked=(1, 2)), SlotRequest(items=(4,), liked=())])
    _, weights = fusion.item_tokens(inputs["features"], inputs["present"], inputs["context"], inputs["has_context"])
    assert torch.allclose(weights.sum(1), torch.ones(3))
    present = inputs["present"]
    assert present[0].all()  # item 3 in a user's prompt: every modality
    assert present[1].tolist() == [True, True, False, False]  # item 11: no CF vector
    assert present[2].tolist() == [True, True, True, False]  # no liked item shown: no user vector, no affinity
    assert (weights[~present] == 0).all() and (weights[present] > 0).all()


def test_slot_without_any_modality_is_an_error():
    bank = FeatureBank(features_frame(), MODALITIES)
    fusion = make_fusion(bank)
    inputs = bank.slot_inputs([SlotRequest(items=(3,), liked=())])
    with pytest.raises(FusionError, match="no modality"):
        fusion.item_tokens(inputs["features"], torch.zeros_like(inputs["present"]), inputs["context"],
                           inputs["has_context"])


def test_affinity_is_the_user_vector_times_the_item_vector():
    frame = features_frame()
    bank = FeatureBank(frame, MODALITIES)
    cf = np.array(frame["collaborative"].to_list()[:4], dtype=np.float32)
    cf /= np.linalg.norm(np.array(frame["collaborative"].drop_nulls().to_list()), axis=1).mean()  # the bank's scale
    inputs = bank.slot_inputs([SlotRequest(items=(USER_SLOT, 4), liked=(1, 2, 3))])
    user = cf[:3].mean(0)
    assert np.allclose(inputs["features"]["affinity"][0].numpy(), user * cf[3] * 2.0, atol=1e-5)  # sqrt(4 dims)
    assert np.allclose(inputs["user_context"][0].numpy(), user, atol=1e-6)
    assert inputs["item_positions"].tolist() == [1] and inputs["user_positions"].tolist() == [0]


def test_affinity_ranking_uses_the_ranking_vectors_and_their_own_fold_in():
    """Two CF settings, two affinities: each from its own item vectors and a user folded in from those vectors,
    masked where its own vectors are missing (item 5 has a ranking vector, no AUC-setting one; item 2 the reverse)."""
    rng = np.random.default_rng(1)
    ranking = rng.normal(size=(12, 3)).astype(np.float32)
    frame = features_frame(cf_missing=(5, 11)).with_columns(
        pl.Series("collaborative_ranking", [None if i == 2 else v.tolist() for i, v in enumerate(ranking, start=1)],
                  dtype=pl.List(pl.Float32))).with_columns(has_collaborative_ranking=pl.col("collaborative_ranking")
                                                            .is_not_null())
    bank = FeatureBank(frame, [*MODALITIES, "affinity_ranking"])
    assert bank.modality_dims == {"text": 6, "attributes": 5, "collaborative": 4, "affinity": 4,
                                  "affinity_ranking": 3}
    scale = np.linalg.norm(np.delete(ranking, 1, axis=0), axis=1).mean()  # the bank's scale, item 2 missing
    inputs = bank.slot_inputs([SlotRequest(items=(5, 4), liked=(1, 2, 3))])
    user = (ranking[[0, 2]] / scale).mean(0)  # item 2 has no ranking vector: the fold-in is items 1 and 3
    got = inputs["features"]["affinity_ranking"].numpy()
    assert np.allclose(got[0], user * ranking[4] / scale * 3 ** 0.5, atol=1e-5)
    assert np.allclose(got[1], user * ranking[3] / scale * 3 ** 0.5, atol=1e-5)
    # item 5: no AUC-setting vector (collaborative and affinity masked), a ranking one (affinity_ranking present)
    assert inputs["present"][0].tolist() == [True, True, False, False, True]
    with pytest.raises(FeatureError, match=r"collaborative_ranking \(needed by affinity_ranking\)"):
        FeatureBank(features_frame(), [*MODALITIES, "affinity_ranking"])


def test_unknown_items_name_the_ids_and_bad_tables_are_refused():
    bank = FeatureBank(features_frame(), MODALITIES, "item_features.parquet")
    with pytest.raises(FeatureError, match=r"item_features.parquet: 2 item ids .*\[99, 100\]"):
        bank.rows([1, 99, 100])
    bad = features_frame().with_columns(pl.Series("text", [[float("nan")] * 6] + [[0.0] * 6] * 11,
                                                  dtype=pl.List(pl.Float32)))
    with pytest.raises(FeatureError, match="column 'text': non-finite"):
        FeatureBank(bad, MODALITIES)
    with pytest.raises(FeatureError, match="missing columns"):
        FeatureBank(features_frame().drop("attributes"), MODALITIES)


HISTORY = [('"A (1995)"', 5.0, 1), ('"B (1996)"', 2.0, 2), ('"C (1997)"', 4.0, 3)]


def test_slotted_prompt_is_the_text_prompt_plus_slots(tokenizer):
    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    text = build_rec_prompt([(q, r) for q, r, _ in HISTORY], '"T (1998)"', 3.0, count, 640, 3).prompt
    prompt, request = slotted_rec_prompt(HISTORY, ('"T (1998)"', 7), 3.0, text_prompt=text)
    assert strip_slots(prompt) == text
    assert prompt.count(SLOT) == 5
    assert request.items == (USER_SLOT, 1, 3, 2, 7)  # user, liked (in order), disliked, target
    assert request.liked == (1, 3)
    with pytest.raises(ValueError, match="more than its slots"):
        slotted_rec_prompt(HISTORY[1:], ('"T (1998)"', 7), 3.0, text_prompt=text)
    with pytest.raises(ValueError, match="slot marker"):
        slotted_rec_prompt([(f'"X {SLOT}"', 5.0, 1)], ('"T"', 7), 3.0)
    # the ranking split: prefix + suffix is the whole slotted prompt, the slots split the same way
    prefix, prefix_request = slotted_parts(HISTORY, 3.0)
    suffix, suffix_request = slotted_suffix(('"T (1998)"', 7), prefix_request.liked)
    assert prefix + suffix == prompt
    assert prefix_request.items + suffix_request.items == request.items


def wide_tiny_llm(tok):
    """A 2-layer LLaMA on SmolLM2's vocabulary with wider initial weights than the default (as in
    test_learnability.py): at std 0.02 the answer logits barely depend on the input, so score equalities would
    hold whatever the soft tokens were."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))


@pytest.fixture
def item_token_model(tokenizer):
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    slot_id = add_slot_token(tok)
    llm = wide_tiny_llm(tok).eval()
    bank = FeatureBank(features_frame(), MODALITIES)
    fusion = make_fusion(bank, hidden=llm.config.hidden_size)
    return ItemTokenLM(llm, fusion, bank, slot_id).eval(), tok, slot_id


def test_soft_tokens_replace_exactly_the_marker_positions(item_token_model):
    model, tok, slot_id = item_token_model
    prompt, request = slotted_rec_prompt(HISTORY, ('"T (1998)"', 7), 3.0)
    ids = torch.tensor([tok(prompt)["input_ids"]])
    with torch.no_grad():
        embeds = model.embed(ids, [request])
        plain = model.llm.get_input_embeddings()(ids.masked_fill(ids == slot_id, 0))
        tokens, _ = model.soft_tokens([request])
    at = (ids[0] == slot_id).nonzero().flatten()
    assert len(at) == 5
    keep = torch.ones(ids.shape[1], dtype=torch.bool)
    keep[at] = False
    assert torch.equal(embeds[0, keep], plain[0, keep])
    assert torch.allclose(embeds[0, at], tokens)
    with pytest.raises(ValueError, match="item markers"):
        model.embed(ids, [SlotRequest(items=(1, 2), liked=())])


def test_shared_prefix_scoring_equals_full_prompt_scoring_with_item_tokens(item_token_model):
    model, tok, slot_id = item_token_model
    answer = answer_token_ids(tok, RESPONSE_MARKER)
    built = [slotted_rec_prompt(HISTORY[k:], (f'"T{t} (1998)"', t), 3.0) for k in range(3) for t in (4, 5, 6, 11)]
    prompts, requests = [p for p, _ in built], [r for _, r in built]
    embed = scoring_embedder(model, requests)
    with torch.no_grad():
        shared = score_yes(model.llm, tok, prompts, answer, 4, embed=embed, slot_id=slot_id)
        full = score_yes(model.llm, tok, prompts, answer, 4, embed=embed, slot_id=slot_id, share_prefix=False)
        # the soft tokens matter: the same prompts with other item vectors score differently
        other = scoring_embedder(model, [SlotRequest(items=tuple(4 if i > 0 else i for i in r.items), liked=(4,))
                                         for r in requests])
        moved = score_yes(model.llm, tok, prompts, answer, 4, embed=other, slot_id=slot_id)
    np.testing.assert_allclose(shared, full, atol=1e-5)
    assert np.abs(moved - full).max() > 1e-3

    # ranking: one user's slotted prefix KV-cached, candidates as suffixes == the candidates' full prompts
    prefix, prefix_request = slotted_parts(HISTORY, 3.0)
    suffixes = [slotted_suffix((f'"T{t} (1998)"', t), prefix_request.liked) for t in (4, 5, 6, 11)]
    with torch.no_grad():
        ranked = score_after_prefix(
            model.llm, tok(prefix)["input_ids"], [tok(s, add_special_tokens=False)["input_ids"] for s, _ in suffixes],
            answer, 3, tok.pad_token_id, embed=scoring_embedder(model, [r for _, r in suffixes]),
            prefix_embed=lambda ids: model.embed(ids, [prefix_request]))
    np.testing.assert_allclose(ranked, full[:4], atol=1e-5)


def test_fusion_round_trip_and_refusals(tmp_path, item_token_model):
    model, _, _ = item_token_model
    save_fusion(model.fusion, tmp_path)
    loaded = load_fusion(tmp_path, features_sha256="x", modality_dims=model.bank.modality_dims, hidden_size=32)
    for (name, a), (_, b) in zip(model.fusion.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(FusionError, match="trained on item features"):
        load_fusion(tmp_path, features_sha256="y")
    with pytest.raises(FusionError, match="modality dimensions"):
        load_fusion(tmp_path, modality_dims={"text": 3})
    with pytest.raises(FusionError, match="hidden size"):
        load_fusion(tmp_path, hidden_size=64)
    (tmp_path / "fusion.safetensors").write_bytes(b"garbage")
    with pytest.raises(FusionError, match="unreadable"):
        load_fusion(tmp_path)


def test_pairwise_ranking_loss_is_the_pointwise_loss_plus_bpr_on_the_yes_no_margin():
    """item_token_pairwise_loss on fixed logits: pointwise CE of every prompt + -log sigmoid(m_liked - m_unrated),
    m = logit(Yes) - logit(No) at the answer position; its gradient raises the liked target's margin and lowers the
    unrated item's; an example without negatives gets the pointwise loss alone."""
    from types import SimpleNamespace

    import torch.nn.functional as F

    from explainrec_core.features.item_token_model import SlotExample, item_token_pairwise_loss

    yes, no, vocab = 3, 4, 6
    # prompt [1, 2] then the answer and a period: labels on the response only
    liked = SlotExample([1, 2, yes, 5], [-100, -100, yes, 5], request=None)
    unrated = SlotExample([1, 2, 0, no, 5], [-100, -100, -100, no, 5], request=None)  # one token longer: padded
    pair = SlotExample(liked.input_ids, liked.labels, request=None, extra=(unrated,))
    logits = torch.randn(2, 5, vocab, generator=torch.Generator().manual_seed(0)).requires_grad_()

    def fake_model(input_ids, requests, attention_mask):
        assert input_ids.shape == (2, 5) and requests == [None, None]
        return SimpleNamespace(logits=logits)

    loss = item_token_pairwise_loss(yes, no)(fake_model, [pair], pad_token_id=0, device="cpu")
    labels = torch.tensor([[-100, -100, yes, 5, -100], [-100, -100, -100, no, 5]])
    pointwise = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100)
    m_liked = logits[0, 1, yes] - logits[0, 1, no]  # the answer of row 0 sits at 2: read at 1
    m_unrated = logits[1, 2, yes] - logits[1, 2, no]
    expected = pointwise - F.logsigmoid(m_liked - m_unrated)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    bpr_only = logits.grad.clone()
    logits.grad = None
    pointwise.backward()
    bpr_only -= logits.grad
    assert bpr_only[0, 1, yes] < 0 < bpr_only[0, 1, no]  # descent raises the liked target's margin
    assert bpr_only[1, 2, yes] > 0 > bpr_only[1, 2, no]  # ... and lowers the unrated item's
    logits.grad = None
    alone = item_token_pairwise_loss(yes, no)(lambda ids, req, attention_mask: SimpleNamespace(logits=logits[:1, :4]),
                                              [liked], pad_token_id=0, device="cpu")
    assert alone.item() == pytest.approx(F.cross_entropy(logits[0, :3], torch.tensor([-100, yes, 5]),
                                                         ignore_index=-100).item(), rel=1e-6)
