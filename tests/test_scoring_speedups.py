"""The CPU speed-ups of P(Yes) scoring keep the scores: the shared preamble runs once and gives full-prompt scores;
the int8 copy merges the LoRA, stays close to fp32 and leaves the original model alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explainrec_core.config import LoraConfig
from explainrec_core.evaluation.quantize import int8_copy, is_int8
from explainrec_core.evaluation.scoring import common_prefix_length, score_yes
from explainrec_core.models.adapters import attach_lora
from explainrec_core.models.base_model import answer_token_ids, load_causal_lm
from explainrec_core.prompts import REC_INSTRUCTION, RESPONSE_MARKER, alpaca_prompt, rec_input

# TALLRec prompts whose remainders after the shared preamble differ in length (mixed right padding per batch)
PROMPTS = [alpaca_prompt(REC_INSTRUCTION, rec_input([f'"Liked {k} ({1980 + k})"' for k in range(n)],
                                                    [f'"Disliked {k}"' for k in range(n % 3)], f'"Target {n} (1999)"'))
           for n in (1, 7, 3, 10, 2, 5, 4)]


@pytest.fixture
def model(tiny_llm_dir):
    """The tiny LLaMA with a bigger weight spread, so scores differ by far more than the tolerances."""
    model = load_causal_lm(tiny_llm_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 2:
                param.normal_(0, 0.3)
    return model


def _one_by_one(model, tokenizer, prompts, answer_ids) -> np.ndarray:
    """P(Yes) by a plain forward pass per prompt: no cache, no padding."""
    out = []
    with torch.inference_mode():
        for prompt in prompts:
            logits = model(**tokenizer(prompt, return_tensors="pt")).logits[0, -1]
            out.append(torch.softmax(logits[[answer_ids["Yes"], answer_ids["No"]]], -1)[0].item())
    return np.array(out)


def _tokens_through(model, fn) -> int:
    """How many token positions the decoder layers process while `fn` runs."""
    seen = []
    hook = model.get_decoder().layers[0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape[:2]))
    try:
        fn()
    finally:
        hook.remove()
    return sum(rows * width for rows, width in seen)


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # each keeps one token to read its answer from
    assert common_prefix_length([[7, 1], [8, 1]]) == 0
    assert common_prefix_length([[5]]) == 0 and common_prefix_length([]) == 0


def test_shared_preamble_scores_equal_full_prompt_scores(model, tokenizer):
    answer_ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    encoded = [tokenizer(p)["input_ids"] for p in PROMPTS]
    shared = common_prefix_length(encoded)
    assert 50 < shared < min(map(len, encoded))  # the Alpaca preamble and instruction, up to the history
    assert len({len(ids) - shared for ids in encoded}) >= 5  # remainders of mixed lengths

    reference = _one_by_one(model, tokenizer, PROMPTS, answer_ids)
    assert reference.std() > 1e-2
    for batch_size in (1, 3, 8):
        fast = score_yes(model, tokenizer, PROMPTS, answer_ids, batch_size, share_prefix=True)
        np.testing.assert_allclose(fast, reference, atol=1e-4)
    full = score_yes(model, tokenizer, PROMPTS, answer_ids, 3, share_prefix=False)
    np.testing.assert_allclose(full, reference, atol=1e-4)


def test_shared_preamble_runs_once(model, tokenizer):
    """The saving is real: the preamble goes through the layers once, not once per prompt."""
    answer_ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    shared = common_prefix_length([tokenizer(p)["input_ids"] for p in PROMPTS])
    counted = []
    for share in (False, True):
        progress = []
        counted.append(_tokens_through(model, lambda: score_yes(model, tokenizer, PROMPTS, answer_ids, 4,
                                                                on_batch=progress.append, share_prefix=share)))
        assert sum(progress) == len(PROMPTS)  # progress still counts prompts
    full, fast = counted
    assert full - fast >= (len(PROMPTS) - 1) * shared - len(PROMPTS) * 10  # (less some right padding)


def test_int8_copy_merges_lora_and_stays_close(model, tokenizer):
    answer_ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    lora = attach_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0))
    torch.manual_seed(2)
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    fp32 = score_yes(lora, tokenizer, PROMPTS, answer_ids, 4)
    with lora.disable_adapter():
        base_only = score_yes(lora, tokenizer, PROMPTS, answer_ids, 4)
    assert np.abs(fp32 - base_only).max() > 5e-2  # the adapter matters, so a lost merge would show

    quantised = int8_copy(lora)
    assert is_int8(quantised) and not is_int8(lora)
    assert not any("lora" in name for name, _ in quantised.named_modules())  # merged, not wrapped
    assert type(quantised.get_output_embeddings()) is nn.Linear  # the Yes/No logits stay fp32
    int8 = score_yes(quantised, tokenizer, PROMPTS, answer_ids, 4)
    assert np.abs(int8 - fp32).max() < 0.05  # close to fp32 ...
    assert np.abs(int8 - fp32).max() < np.abs(fp32 - base_only).max() / 2  # ... far closer than without the LoRA
    # the flag quantises a copy itself; the original keeps its adapter and its fp32 scores
    np.testing.assert_allclose(score_yes(lora, tokenizer, PROMPTS, answer_ids, 4, int8=True), int8, atol=1e-6)
    np.testing.assert_allclose(score_yes(lora, tokenizer, PROMPTS, answer_ids, 4), fp32, atol=1e-7)
