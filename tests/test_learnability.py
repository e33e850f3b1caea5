"""Can the pipeline's training + scoring path learn at all? A toy task whose answer is written in the prompt.

The other LLM tests only check that AUC lies in [0, 1], which no bug can fail. Here the prompt says
"colour: red" (answer Yes) or "colour: blue" (answer No) among random filler, and the same code the pipeline runs
(fresh LoRA on the pipeline's settings -> `examples.encode` -> `engine.train` -> `scoring.score_yes` -> `auc`)
must rank held-out prompts almost perfectly. A broken label mask, a padding or position bug in scoring, answer
ids read from the wrong position, or LoRA weights that never update all leave the AUC near 0.5.
"""

from __future__ import annotations

import random

import pytest
import torch

from explainrec_core.config import LoraConfig, TrainConfig
from explainrec_core.evaluation.scoring import auc, score_yes
from explainrec_core.models.adapters import attach_lora
from explainrec_core.models.base_model import answer_token_ids
from explainrec_core.prompts import RESPONSE_MARKER, rec_response
from explainrec_core.training.engine import train
from explainrec_core.training.examples import encode_all

NAMES = ("Ann", "Bob", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea")


@pytest.fixture(autouse=True)
def _cpu(cpu_one_thread):
    """Train on one CPU thread with a clean accelerate state (tests/conftest.py)."""


def toy_base(tokenizer):
    """A 2-layer LLaMA on SmolLM2's vocabulary. Wider initial weights than the default (std 0.02) leave LoRA on
    q/v room to move the Yes/No logits in a few steps; with the default, 6 epochs only take the loss from 10.72
    to 10.67 and the AUC stays near chance."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.2,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))


def toy_prompts(n: int, seed: int) -> list[tuple[str, int]]:
    """(prompt, label): the colour decides the label; the name and number are noise that changes every prompt."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = i % 2
        fields = f"name: {rng.choice(NAMES)}, number: {rng.randint(1, 99)}, colour: {'red' if label else 'blue'}"
        out.append((f"{fields}\n\n{RESPONSE_MARKER}", label))
    return out


def test_the_training_and_scoring_path_learns_a_readable_answer(tokenizer, tmp_path):
    answer_ids = answer_token_ids(tokenizer, RESPONSE_MARKER)
    train_set, test_set = toy_prompts(32, seed=0), toy_prompts(40, seed=1)
    cfg = TrainConfig(lr=3e-2, epochs=10, batch_size=4, grad_accum=1, cutoff=64, warmup_steps=0,
                      checkpoint_every=0, seed=0)
    examples, skipped = encode_all(tokenizer, [(p, rec_response(y)) for p, y in train_set], cfg.cutoff)
    assert skipped == 0
    prompts, labels = [p for p, _ in test_set], [y for _, y in test_set]

    model = attach_lora(toy_base(tokenizer), LoraConfig())
    before = auc(labels, score_yes(model, tokenizer, prompts, answer_ids, batch_size=8))
    result = train(model, examples, cfg, pad_token_id=tokenizer.pad_token_id, checkpoint_dir=tmp_path / "ckpt")
    after = auc(labels, score_yes(model, tokenizer, prompts, answer_ids, batch_size=8))

    assert after > 0.9, (before, after, result.losses)
    assert before < 0.8  # the untrained model does not read the colour: the AUC is learnt
