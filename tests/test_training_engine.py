"""The LoRA training loop on a tiny LLaMA (CPU, seconds): learning, resume after a crash, early stopping,
gradient accumulation, bad input and atomic checkpoints."""

from __future__ import annotations

import dataclasses
import json
import re

import peft
import pytest
import torch
import transformers
from safetensors.torch import load_file

from explainrec_core.config import TrainConfig
from explainrec_core.training.engine import CheckpointError, Example, collate, train

PAD, BOS, EOS = 0, 1, 2


@pytest.fixture(autouse=True)
def _cpu(cpu_one_thread):
    """Every test here trains on one CPU thread with a clean accelerate state (tests/conftest.py)."""


def tiny_model(lora_dropout: float = 0.05) -> peft.PeftModel:
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                   # The default init (std 0.02) gives near-uniform logits that LoRA on q/v can
                                   # barely move (loss 4.10 -> 4.02 in 5 epochs); 0.2 leaves room to learn.
                                   initializer_range=0.2)
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(cfg)
    lora = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=lora_dropout, target_modules=["q_proj", "v_proj"],
                           task_type="CAUSAL_LM")
    return peft.get_peft_model(base, lora)


def toy_examples(n: int = 32) -> list[Example]:
    """Prompt: BOS + 3-6 random tokens; response: a token determined by the first prompt token, then EOS."""
    g = torch.Generator().manual_seed(1234)
    out = []
    for _ in range(n):
        length = int(torch.randint(3, 7, (1,), generator=g))
        prompt = [BOS] + torch.randint(8, 40, (length,), generator=g).tolist()
        response = [40 + prompt[1] % 16, EOS]
        out.append(Example(input_ids=prompt + response, labels=[-100] * len(prompt) + response))
    return out


def lora_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys() and a
    for n in a:
        torch.testing.assert_close(a[n], b[n], atol=atol, rtol=0, msg=n)


CFG = TrainConfig(lr=5e-3, epochs=2, batch_size=4, grad_accum=1, cutoff=16, checkpoint_every=5, seed=0)


def test_loss_goes_down_and_only_lora_weights_change(tmp_path):
    model = tiny_model()
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    lora_before = lora_weights(model)
    res = train(model, toy_examples(), dataclasses.replace(CFG, epochs=5, lr=3e-2), pad_token_id=PAD,
                checkpoint_dir=tmp_path)

    assert res.steps == 5 * 8 and res.epochs_done == 5.0 and len(res.losses) == 40
    per_epoch = [sum(loss for _, loss in res.losses[i:i + 8]) / 8 for i in range(0, 40, 8)]
    assert per_epoch[-1] < per_epoch[0] - 0.5, per_epoch  # 4.18 -> 3.01 when written
    base_after = {n: p.detach() for n, p in model.named_parameters() if "lora_" not in n}
    assert all(torch.equal(base_before[n], base_after[n]) for n in base_before)
    assert any(not torch.equal(lora_before[n], w) for n, w in lora_weights(model).items())
    assert not model.training and isinstance(model, peft.PeftModel)
    assert res.device == "cpu" and res.mixed_precision == "no" and res.resumed_from_step is None
    assert res.tokens == 5 * sum(len(e.input_ids) for e in toy_examples()) and res.tokens_per_s > 0
    assert res.peak_memory_mb > 0 and res.to_dict()["losses"][0][0] == 1


def test_batches_follow_the_seeded_permutation_and_are_right_padded(tmp_path):
    model, examples, seen = tiny_model(), toy_examples(10), []

    def record(module, args, kwargs):
        batch = {k: kwargs[k].clone() for k in ("input_ids", "attention_mask", "labels")}
        seen.append(batch | {"train": module.training})

    model.base_model.model.register_forward_pre_hook(record, with_kwargs=True)
    train(model, examples, dataclasses.replace(CFG, epochs=2, batch_size=4, seed=7), pad_token_id=PAD,
          checkpoint_dir=tmp_path)

    expected = []
    for epoch in range(2):
        perm = torch.randperm(10, generator=torch.Generator().manual_seed(7 + epoch)).tolist()
        expected += [perm[i:i + 4] for i in range(0, 10, 4)]  # micro-batches of 4, 4 and 2
    assert len(seen) == len(expected) == 6
    for batch, idx in zip(seen, expected, strict=True):
        assert batch["train"]
        width = max(len(examples[i].input_ids) for i in idx)
        assert batch["input_ids"].shape == (len(idx), width)
        for row, i in enumerate(idx):
            n = len(examples[i].input_ids)
            assert batch["input_ids"][row].tolist() == examples[i].input_ids + [PAD] * (width - n)
            assert batch["labels"][row].tolist() == examples[i].labels + [-100] * (width - n)
            assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)


def fixed_metric(model) -> float:
    """A deterministic validation metric: minus the loss on a fixed batch."""
    ex = toy_examples(4)
    ids = torch.tensor([e.input_ids[:5] for e in ex])
    return -model(input_ids=ids, labels=ids).loss.item()


def test_crash_and_resume_gives_the_same_weights_and_history(tmp_path):
    # Micro-batches of 2, two per step: 8 steps per epoch; the checkpoint at step 9 is one step into epoch 2.
    cfg = dataclasses.replace(CFG, batch_size=2, grad_accum=2, checkpoint_every=3, eval_every=4)
    model_a = tiny_model()
    res_a = train(model_a, toy_examples(), cfg, pad_token_id=PAD, checkpoint_dir=tmp_path / "a",
                  evaluate=fixed_metric)

    def crash_at_10(step, loss):
        if step == 10:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_model(), toy_examples(), cfg, pad_token_id=PAD, checkpoint_dir=tmp_path / "b",
              evaluate=fixed_metric, on_step=crash_at_10)
    assert not (tmp_path / "b" / ".last.tmp").exists()
    model_b = tiny_model()  # a new process: fresh model, same seed
    res_b = train(model_b, toy_examples(), cfg, pad_token_id=PAD, checkpoint_dir=tmp_path / "b",
                  evaluate=fixed_metric)

    assert res_b.resumed_from_step == 9 and res_b.steps == res_a.steps == 16
    assert res_b.losses == res_a.losses
    assert [s for s, _ in res_b.evals] == [s for s, _ in res_a.evals] == [4, 8, 12, 16]
    assert [m for _, m in res_b.evals] == pytest.approx([m for _, m in res_a.evals], abs=1e-6)
    assert res_b.best_step == res_a.best_step
    assert_close(lora_weights(model_b), lora_weights(model_a), atol=1e-6)
    assert_close(load_file(tmp_path / "b" / "last" / "adapter.safetensors"),
                 load_file(tmp_path / "a" / "last" / "adapter.safetensors"), atol=1e-6)


class CallCountingLoss:
    """A stateful loss_fn: the causal-LM loss scaled by how many calls came before (state a resume must restore)."""

    def __init__(self):
        self.calls, self.steps = 0, []

    def __call__(self, model, examples, pad_token_id, device, step):
        self.steps.append(step)
        self.calls += 1
        return model(**collate(examples, pad_token_id, device)).loss * (1 + (self.calls % 3) / 10)

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = state["calls"]


def test_a_stateful_loss_gets_the_step_and_its_state_survives_a_resume(tmp_path):
    cfg = dataclasses.replace(CFG, batch_size=2, grad_accum=2, checkpoint_every=3)
    loss_a = CallCountingLoss()
    res_a = train(tiny_model(), toy_examples(), cfg, pad_token_id=PAD, checkpoint_dir=tmp_path / "a", loss_fn=loss_a)
    assert loss_a.steps == [s for s in range(16) for _ in range(2)]  # two micro-batches per optimizer step
    assert json.loads((tmp_path / "a" / "last" / "loss_state.json").read_text()) == {"calls": 32}

    def crash_at_10(step, loss):
        if step == 10:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_model(), toy_examples(), cfg, pad_token_id=PAD, checkpoint_dir=tmp_path / "b",
              loss_fn=CallCountingLoss(), on_step=crash_at_10)
    loss_b = CallCountingLoss()  # a new process: its state comes from the checkpoint (step 9: 18 calls)
    res_b = train(tiny_model(), toy_examples(), cfg, pad_token_id=PAD, checkpoint_dir=tmp_path / "b", loss_fn=loss_b)
    assert res_b.resumed_from_step == 9 and loss_b.steps[0] == 9 and loss_b.calls == 32
    assert res_b.losses == res_a.losses


def test_early_stopping_keeps_the_best_weights(tmp_path):
    model = tiny_model()
    seen = []

    def worse_each_time(m) -> float:
        assert not m.training
        seen.append(lora_weights(m))
        return -float(len(seen))

    cfg = dataclasses.replace(CFG, epochs=3, eval_every=2, patience=2)
    res = train(model, toy_examples(), cfg, pad_token_id=PAD, checkpoint_dir=tmp_path, evaluate=worse_each_time)

    assert res.stopped_early and res.steps == 6 and len(seen) == 3
    assert res.best_step == 2 and res.best_metric == -1.0 and res.evals == [(2, -1.0), (4, -2.0), (6, -3.0)]
    assert_close(lora_weights(model), seen[0], atol=0)
    assert any(not torch.equal(seen[0][n], seen[-1][n]) for n in seen[0])
    # Calling again with the finished checkpoint trains nothing more: early stopping is part of the state.
    again = train(tiny_model(), toy_examples(), cfg, pad_token_id=PAD, checkpoint_dir=tmp_path,
                  evaluate=worse_each_time)
    assert again.stopped_early and again.steps == 6 and again.resumed_from_step == 6 and len(seen) == 3


def test_gradient_accumulation_matches_a_bigger_batch(tmp_path):
    cfg = dataclasses.replace(CFG, epochs=1, lr=1e-2)
    accumulated, big = tiny_model(lora_dropout=0.0), tiny_model(lora_dropout=0.0)
    res_acc = train(accumulated, toy_examples(), dataclasses.replace(cfg, batch_size=2, grad_accum=2),
                    pad_token_id=PAD, checkpoint_dir=tmp_path / "acc")
    res_big = train(big, toy_examples(), dataclasses.replace(cfg, batch_size=4, grad_accum=1),
                    pad_token_id=PAD, checkpoint_dir=tmp_path / "big")
    assert res_acc.steps == res_big.steps == 8
    assert [s for s, _ in res_acc.losses] == [s for s, _ in res_big.losses]
    assert [x for _, x in res_acc.losses] == pytest.approx([x for _, x in res_big.losses], abs=1e-5)
    assert_close(lora_weights(accumulated), lora_weights(big), atol=1e-5)

    # 30 examples in micro-batches of 4 = 8 micro-batches; in groups of 3 that is 3 steps (the last one short).
    res = train(tiny_model(), toy_examples(30), dataclasses.replace(cfg, epochs=2, grad_accum=3),
                pad_token_id=PAD, checkpoint_dir=tmp_path / "short")
    assert res.steps == 6 and res.epochs_done == 2.0


def test_bad_input_is_rejected_clearly(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        train(tiny_model(), [], CFG, pad_token_id=PAD, checkpoint_dir=tmp_path / "x")
    examples = toy_examples(8)
    examples[3] = Example(input_ids=[BOS] * 20, labels=[-100] * 19 + [EOS])
    with pytest.raises(ValueError, match=r"example 3 has 20 tokens.*cutoff=16"):
        train(tiny_model(), examples, CFG, pad_token_id=PAD, checkpoint_dir=tmp_path / "x")

    short = dataclasses.replace(CFG, max_steps=2, checkpoint_every=1)
    train(tiny_model(), toy_examples(), short, pad_token_id=PAD, checkpoint_dir=tmp_path / "c")
    last = tmp_path / "c" / "last"
    (last / "adapter.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=re.escape(str(last))):
        train(tiny_model(), toy_examples(), short, pad_token_id=PAD, checkpoint_dir=tmp_path / "c")
    (last / "adapter.safetensors").unlink()
    with pytest.raises(CheckpointError, match=re.escape(str(last)) + ".*missing adapter.safetensors"):
        train(tiny_model(), toy_examples(), short, pad_token_id=PAD, checkpoint_dir=tmp_path / "c")
    # A checkpoint from other settings would resume on a different data order.
    train(tiny_model(), toy_examples(), short, pad_token_id=PAD, checkpoint_dir=tmp_path / "d")
    with pytest.raises(CheckpointError, match="batch_size"):
        train(tiny_model(), toy_examples(), dataclasses.replace(short, batch_size=2), pad_token_id=PAD,
              checkpoint_dir=tmp_path / "d")


def test_checkpoints_are_atomic_and_complete(tmp_path):
    res = train(tiny_model(), toy_examples(), dataclasses.replace(CFG, epochs=1), pad_token_id=PAD,
                checkpoint_dir=tmp_path, evaluate=fixed_metric)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    files = sorted(p.name for p in (tmp_path / "last").iterdir())
    assert files == ["adapter.safetensors", "best_adapter.safetensors", "optimizer.pt", "rng.pt",
                     "trainer_state.json"]
    saved = load_file(tmp_path / "last" / "adapter.safetensors")
    assert saved and all("lora_" in n for n in saved)

    # A crash between the two renames of a swap leaves only `.last.old`: it is recovered, not ignored.
    (tmp_path / "last").rename(tmp_path / ".last.old")
    (tmp_path / ".last.tmp").mkdir()  # and a half-written next checkpoint, which is discarded
    again = train(tiny_model(), toy_examples(), dataclasses.replace(CFG, epochs=1), pad_token_id=PAD,
                  checkpoint_dir=tmp_path, evaluate=fixed_metric)
    assert again.resumed_from_step == res.steps == 8 and again.losses == res.losses
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_parameters_of_a_prefix_train_at_their_own_rate(tmp_path):
    """lr_by_prefix: one step of AdamW moves a parameter by about its rate (lr * sign(grad)), so a prefix's group and
    the rest move by their two rates. (LoRA's B matrices: the A matrices get no gradient while B is still zero.)"""
    model = tiny_model(lora_dropout=0.0)
    before = lora_weights(model)
    prefix = "base_model.model.model.layers.0.self_attn.q_proj.lora_B"
    cfg = dataclasses.replace(CFG, epochs=1, warmup_steps=0, max_steps=1, lr=1e-2)
    train(model, toy_examples(8), cfg, pad_token_id=PAD, checkpoint_dir=tmp_path / "a",
          lr_by_prefix={prefix: 1e-3})
    after = lora_weights(model)
    own = (after[f"{prefix}.default.weight"] - before[f"{prefix}.default.weight"]).abs().max().item()
    other = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.default.weight"
    rest = (after[other] - before[other]).abs().max().item()
    # Adam's first step is lr * sign(grad) (up to eps) for every entry with a gradient
    assert own == pytest.approx(1e-3, rel=0.05) and rest == pytest.approx(1e-2, rel=0.05)
    with pytest.raises(ValueError, match="no trainable parameter starts with"):
        train(tiny_model(), toy_examples(8), cfg, pad_token_id=PAD, checkpoint_dir=tmp_path / "b",
              lr_by_prefix={"fusion.": 1e-3})
