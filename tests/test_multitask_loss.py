"""The multi-task loss (eq. 10-11): bundles put both tasks in every micro-batch; the weights sum the task terms."""

from __future__ import annotations

import pytest
import torch

from explainrec_core.config import MultitaskConfig, TrainConfig
from explainrec_core.training.engine import collate, train
from explainrec_core.training.examples import encode
from explainrec_core.training.multitask_loss import MultitaskLoss, bundle


@pytest.fixture
def tiny(tiny_llm_dir, cpu_one_thread):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))


def _bundles(tokenizer, n: int, noisy_rating: bool):
    """A learnable preference task (the answer is written in the prompt) and a rating task whose star is random
    when `noisy_rating` (its loss cannot fall below the entropy of the draw: a stalled task)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        answer = "Yes" if i % 2 else "No"
        stars = int(torch.randint(1, 6, (1,), generator=g)) if noisy_rating else 4
        out.append(bundle(encode(tokenizer, f"Say {answer}.\n### Response:\n", f"{answer}."),
                          encode(tokenizer, f"Rate film {i}.\n### Response:\n", f"{stars}")))
    return out


def test_terms_are_each_tasks_own_loss_and_fixed_weights_sum_them(tiny, tokenizer):
    examples = _bundles(tokenizer, 4, noisy_rating=False)
    loss = MultitaskLoss(MultitaskConfig(preference_weight=1.0, rating_weight=0.25))
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        total = loss(tiny, examples, pad, "cpu", step=0)
        pref = tiny(**collate(examples, pad, "cpu")).loss
        rating = tiny(**collate([e.extra[0] for e in examples], pad, "cpu")).loss
    assert loss.last_terms == pytest.approx({"preference": float(pref), "rating": float(rating)})
    assert float(total) == pytest.approx(float(pref) + 0.25 * float(rating), rel=1e-6)
    with pytest.raises(ValueError, match="exactly one rating example"):
        loss(tiny, [encode(tokenizer, "Say Yes.\n### Response:\n", "Yes.")], pad, "cpu")


@pytest.mark.parametrize("scheme", ["uncertainty", "dwa"])
def test_adaptive_weights_train_with_the_model_and_resume_from_the_checkpoint(tiny_llm_dir, tokenizer, tmp_path,
                                                                              cpu_one_thread, scheme):
    """Through the engine: the weights are recorded at every optimizer step and move as each scheme says (both
    losses stay above 1 here, so uncertainty weighting's log-variances grow towards log L_k and both weights fall
    below their start of 0.5; DWA's weights leave 1 once two windows have losses and always sum to the number of
    tasks); a run stopped half-way and resumed from its checkpoint ends with the same weights as one that was not
    (the loss state is in the checkpoint). Which way each scheme moves a stalled task's weight is shown on a toy
    problem in tests/test_task_weights.py."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    def run(folder, crash_at: int = 0):
        def on_step(step, loss):
            if step == crash_at:
                raise RuntimeError("simulated crash")

        torch.manual_seed(0)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llm_dir),
                               LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        loss = MultitaskLoss(MultitaskConfig(weighting=scheme, dwa_window=2, weighting_lr=0.1))
        cfg = TrainConfig(epochs=4, batch_size=8, grad_accum=1, lr=1e-2, warmup_steps=0, cutoff=64,
                          checkpoint_every=1)
        result = train(model, _bundles(tokenizer, 32, noisy_rating=True), cfg, pad_token_id=tokenizer.pad_token_id,
                       checkpoint_dir=folder, loss_fn=loss, on_step=on_step)
        return result, loss

    result, loss = run(tmp_path / "whole")
    history = loss.weighting.history
    assert result.steps == 16 and [s for s, _ in history] == list(range(16))
    first, last = history[0][1], history[-1][1]
    if scheme == "uncertainty":
        assert first == {"preference": 0.5, "rating": 0.5}
        assert max(last.values()) < 0.3  # s_k grew from 0 towards log L_k (L_k ~ 5-10 here)
    else:
        assert first == {"preference": 1.0, "rating": 1.0} and sum(last.values()) == pytest.approx(2.0)
        assert last["rating"] != 1.0  # both losses fall at similar rates here: the weights move, a little
    if scheme == "dwa":
        return  # DWA's state round trip is tested in test_task_weights.py; one resumed training suffices here
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "cut", crash_at=8)
    again, resumed = run(tmp_path / "cut")
    assert again.resumed_from_step == 8
    assert [s for s, _ in resumed.weighting.history] == list(range(16))
    assert resumed.weighting.history[-1][1] == pytest.approx(last, rel=1e-4)
