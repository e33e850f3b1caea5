"""Shared-prefix (KV-cached) scoring gives the scores of full prompts; the split reproduces TALLRec's prompt."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from explainrec_core.config import LoraConfig
from explainrec_core.evaluation.prefix_scoring import (
    boundary_matches,
    candidate_suffix,
    rec_prompt_parts,
    score_shared_prefix,
)
from explainrec_core.evaluation.scoring import score_yes
from explainrec_core.models.adapters import attach_lora
from explainrec_core.models.base_model import answer_token_ids, load_causal_lm
from explainrec_core.prompts import RESPONSE_MARKER, build_rec_prompt, quote_item

HISTORY = [('"Toy Story (1995)"', 5.0), ('"GoldenEye (1995)"', 2.0), ('"Four Rooms (1995)"', 4.0),
           ('"Get Shorty (1995)"', 3.0), ('"Copycat (1995)"', 1.0), ('"Twelve Monkeys (1995)"', 4.5)]
TARGETS = ['"Up (2009)"', '"Star Wars (1977)"',
           '"Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1963)"', '"Heat (1995)"',
           '"M (1931)"', '"Shawshank Redemption, The (1994)"', '"City of Lost Children, The (1995)"']


def _full_prompt(tokenizer, history, target) -> str:
    return build_rec_prompt(history, target, 3.0, lambda t: len(tokenizer(t)["input_ids"]), cutoff=10_000,
                            response_tokens=2).prompt


def _reference(model, tokenizer, prefix, suffixes, answer_ids) -> np.ndarray:
    """P(Yes) by one plain forward pass per prompt over prefix_ids + suffix_ids (no cache, no padding)."""
    prefix_ids = tokenizer(prefix)["input_ids"]
    out = []
    with torch.inference_mode():
        for suffix in suffixes:
            ids = prefix_ids + tokenizer(suffix, add_special_tokens=False)["input_ids"]
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            out.append(torch.softmax(logits[[answer_ids["Yes"], answer_ids["No"]]], -1)[0].item())
    return np.array(out)


def _spread_weights(model) -> None:
    """Random weights with a bigger spread, so scores differ by far more than the tolerance."""
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 2:
                param.normal_(0, 0.3)


@pytest.fixture
def tiny_model(tiny_llm_dir):
    model = load_causal_lm(tiny_llm_dir)
    _spread_weights(model)
    return model


def test_prefix_plus_suffix_is_the_full_tallrec_prompt(tokenizer):
    for history in (HISTORY, HISTORY[:1], []):
        prefix = rec_prompt_parts(history, 3.0)
        assert prefix.endswith("Whether the user will like the target movie")
        for target in TARGETS:
            assert prefix + candidate_suffix(target) == _full_prompt(tokenizer, history, target)
    assert candidate_suffix('"Heat (1995)"') == ' "Heat (1995)"?\n\n### Response:\n'


def test_shared_prefix_scores_equal_full_prompt_scores(tiny_model, tokenizer):
    answer_ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    prefix = rec_prompt_parts(HISTORY, 3.0)
    suffixes = [candidate_suffix(t) for t in TARGETS]
    lengths = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in suffixes]
    assert len(set(lengths)) >= 4  # right padding is exercised (batches of 3 mix lengths)

    shared = score_shared_prefix(tiny_model, tokenizer, prefix, suffixes, answer_ids, batch_size=3)
    reference = _reference(tiny_model, tokenizer, prefix, suffixes, answer_ids)
    np.testing.assert_allclose(shared, reference, atol=1e-5)
    assert shared.std() > 1e-2  # the candidates really get different scores
    # for SmolLM2's tokenizer the ids equal those of the full prompt strings, so the production scorer agrees too
    full = score_yes(tiny_model, tokenizer, [prefix + s for s in suffixes], answer_ids, batch_size=4)
    np.testing.assert_allclose(shared, full, atol=1e-5)
    # batch size does not matter, and the prefix (the cached part) does
    np.testing.assert_allclose(score_shared_prefix(tiny_model, tokenizer, prefix, suffixes, answer_ids, 32), shared,
                               atol=1e-5)
    other = score_shared_prefix(tiny_model, tokenizer, rec_prompt_parts(HISTORY[:2], 3.0), suffixes, answer_ids, 3)
    assert np.abs(other - shared).max() > 1e-2


def test_shared_prefix_through_a_lora_model(tiny_model, tokenizer):
    answer_ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    prefix = rec_prompt_parts(HISTORY, 3.0)
    suffixes = [candidate_suffix(t) for t in TARGETS]
    base_scores = _reference(tiny_model, tokenizer, prefix, suffixes, answer_ids)
    model = attach_lora(tiny_model, LoraConfig(r=4, alpha=8, dropout=0.0))
    torch.manual_seed(2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    reference = _reference(model, tokenizer, prefix, suffixes, answer_ids)
    assert np.abs(reference - base_scores).max() > 1e-2  # the adapter changes the scores
    shared = score_shared_prefix(model, tokenizer, prefix, suffixes, answer_ids, batch_size=3)
    np.testing.assert_allclose(shared, reference, atol=1e-5)


def test_smollm2_tokenizes_real_prompts_identically_across_the_split(tokenizer, processed_ml100k):
    """Report on real ML-100K test prompts: where the split gives the full string's token ids, and where not."""
    folder = processed_ml100k / "data" / "processed"
    items = pl.read_parquet(folder / "items.parquet")
    titles = {r["item_id"]: quote_item(r["title"], r["year"]) for r in items.iter_rows(named=True)}
    samples = (pl.read_parquet(folder / "samples.parquet").filter(pl.col("split") == "test").sort("sample_id")
               .gather_every(50))
    assert samples.height >= 150
    all_targets = list(titles.values())
    matches, space_in_prefix_matches = 0, 0
    for row in samples.iter_rows(named=True):
        history = [(titles[i], r) for i, r in zip(row["history_item_ids"], row["history_ratings"], strict=True)]
        prefix = rec_prompt_parts(history, 3.0)
        # this sample's target plus a few catalogue titles with quotes, colons, accents, numbers
        targets = [titles[row["item_id"]], *all_targets[row["sample_id"] % 1600:][:3]]
        suffixes = [candidate_suffix(t) for t in targets]
        assert all(prefix + s == _full_prompt(tokenizer, history, t) for s, t in zip(suffixes, targets, strict=True))
        matches += boundary_matches(tokenizer, prefix, suffixes)
        # the alternative split with the space left in the prefix ("...target movie " + '"Title..."')
        space_in_prefix_matches += boundary_matches(tokenizer, prefix + " ", [s[1:] for s in suffixes])
    print(f"\nSmolLM2, {samples.height} real test prompts x 4 targets: ids of prefix+suffix == ids of the full "
          f"string for {matches} (split before the space), {space_in_prefix_matches} (split after the space)")
    assert matches == samples.height  # our split: identical token ids for every real prompt
    assert space_in_prefix_matches == 0  # 'Ġ' + '"' instead of SmolLM2's single 'Ġ"' token
    prefix_ids = tokenizer(rec_prompt_parts(HISTORY, 3.0) + " ")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(prefix_ids[-1:]) == ["Ġ"]


def test_bad_inputs(tiny_model, tokenizer):
    answer_ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    prefix = rec_prompt_parts(HISTORY, 3.0)
    assert score_shared_prefix(tiny_model, tokenizer, prefix, [], answer_ids).shape == (0,)
    with pytest.raises(ValueError, match="suffix"):
        score_shared_prefix(tiny_model, tokenizer, prefix, ["", candidate_suffix('"Up (2009)"')], answer_ids)
    with pytest.raises(ValueError, match="batch_size"):
        score_shared_prefix(tiny_model, tokenizer, prefix, ["x"], answer_ids, batch_size=0)
    tiny_model.train()
    score_shared_prefix(tiny_model, tokenizer, prefix, [candidate_suffix('"Up (2009)"')], answer_ids)
    assert tiny_model.training  # the mode is restored
