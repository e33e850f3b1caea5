"""A LoRA fine-tuning loop on HF accelerate: deterministic batches, crash-safe resumable checkpoints, early stopping.

One function, `train`, in the nanoGPT/litgpt spirit: the loop is written out rather than hidden in a Trainer, so
what happens at each optimizer step is visible. Resuming is automatic: when `checkpoint_dir/last` exists, training
continues exactly where that checkpoint left off (same data order, same RNG state, same optimizer state), so a
crashed run finishes with the same weights and loss history as an uninterrupted one.

Checkpoint layout (`checkpoint_dir/last/`):
    adapter.safetensors       trainable (LoRA) weights, keyed by parameter name
    best_adapter.safetensors  the best-evaluated trainable weights (only once an evaluation ran)
    optimizer.pt              optimizer and LR-scheduler state_dicts
    rng.pt                    python / numpy / torch (and CUDA) RNG states
    trainer_state.json        counters, loss and eval history, best metric, the settings that fix the data order
    loss_state.json           the state of a stateful `loss_fn` (one with state_dict/load_state_dict), e.g. the
                              joint loss's cache of generated explanations; only written for such a loss
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from transformers import get_linear_schedule_with_warmup

from explainrec_core.config import TrainConfig
from explainrec_core.errors import ExplainRecError
from explainrec_core.memory import peak_rss_mb

IGNORE_INDEX = -100  # label value the HF causal-LM loss skips (prompt tokens and padding)
CHECKPOINT_FILES = ("adapter.safetensors", "optimizer.pt", "rng.pt", "trainer_state.json")  # all required
LOSS_STATE = "loss_state.json"  # only for a stateful loss_fn


class CheckpointError(ExplainRecError):
    """A checkpoint to resume from is unreadable, incomplete or from other settings."""


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens: loss on the response only
    # For the joint explanation loss (training/joint_loss.py): where the answer token sits in input_ids (the
    # prompt is everything before it). -1 = not used.
    answer_pos: int = -1
    # Examples of other tasks trained together with this one (multi-task bundles, training/multitask_loss.py: the
    # rating example of the same sample), so every micro-batch holds every task. Only a loss_fn reads them.
    extra: tuple[Example, ...] = ()


@dataclass
class TrainResult:
    steps: int  # optimizer steps done in total (including before a resume)
    epochs_done: float
    losses: list[tuple[int, float]]  # (optimizer step, mean loss of that step's micro-batches)
    evals: list[tuple[int, float]]  # (optimizer step, metric) from `evaluate`
    best_step: int | None
    best_metric: float | None
    stopped_early: bool
    resumed_from_step: int | None
    train_seconds: float  # this call only (not the time spent before a resume)
    tokens: int  # non-padding tokens processed by this call
    tokens_per_s: float
    peak_memory_mb: float  # torch.cuda.max_memory_allocated on GPU, else the process's max RSS
    device: str
    mixed_precision: str

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["losses"], d["evals"] = [list(x) for x in self.losses], [list(x) for x in self.evals]
        return d


@dataclass
class _State:
    """Everything about progress that a checkpoint must restore (besides weights, optimizer and RNG)."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch
    step_in_epoch: int = 0  # optimizer steps done in the current epoch
    losses: list[tuple[int, float]] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)
    best_step: int | None = None
    best_metric: float | None = None
    evals_since_best: int = 0
    stopped_early: bool = False


def train(model, examples: Sequence[Example], cfg: TrainConfig, *, pad_token_id: int,
          checkpoint_dir: Path, evaluate: Callable[[Any], float] | None = None,
          on_step: Callable[[int, float], None] | None = None,
          loss_fn: Callable[..., torch.Tensor] | None = None,
          lr_by_prefix: dict[str, float] | None = None) -> TrainResult:
    """Fine-tune the trainable (LoRA) weights of `model` in place; resume from `checkpoint_dir/last` if present.

    `evaluate(model)` returns a metric where higher is better; with it, the model ends with its best weights.
    `loss_fn(model, examples, pad_token_id, device, step=optimizer steps done)` replaces the causal-LM loss on
    the labels (e.g. the joint answer + explanation + consistency loss). A loss_fn with `state_dict()` (JSON-able)
    and `load_state_dict()` has that state saved in every checkpoint and restored on resume.
    `lr_by_prefix` gives the trainable parameters whose name starts with a prefix their own learning rate (e.g. a
    freshly initialised item-token fusion trained jointly with the LoRA); the rest train at `cfg.lr`, and the
    warm-up / linear decay scales every group alike.
    The model is left in eval mode.
    """
    _check_inputs(examples, cfg)
    checkpoint_dir = Path(checkpoint_dir)
    on_gpu = torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision="bf16" if on_gpu else "no", gradient_accumulation_steps=cfg.grad_accum,
                              cpu=not on_gpu)
    set_seed(cfg.seed)

    # The LoRA weights stay fp32 even when the base model is bf16: bf16 has too few mantissa bits for small
    # updates to accumulate, and autocast runs the matmuls in bf16 anyway.
    model.to(accelerator.device)  # before the optimizer is built, so it holds the parameters training updates
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no trainable parameters (expected a peft model with LoRA adapters)")
    for p in params.values():
        p.data = p.data.float()
    # a loss with parameters of its own (uncertainty weighting's log-variances) trains them too, in the optimizer
    # groups it gives (their own rate, no weight decay)
    extra = loss_fn.param_groups() if hasattr(loss_fn, "param_groups") else []
    for group in extra:
        for p in group["params"]:
            p.data = p.data.to(accelerator.device)
    optimizer = torch.optim.AdamW([*_lr_groups(params, lr_by_prefix or {}), *extra], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    wrapped, optimizer = accelerator.prepare(model, optimizer)

    n_micro = math.ceil(len(examples) / cfg.batch_size)
    steps_per_epoch = math.ceil(n_micro / cfg.grad_accum)  # a short last group still makes an optimizer step
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps > 0:
        total_steps = min(total_steps, cfg.max_steps)
    # Stepped by hand once per optimizer step (not prepared: accelerate would step it once per process).
    scheduler = get_linear_schedule_with_warmup(optimizer.optimizer, cfg.warmup_steps, max(total_steps, 1))

    # What fixes which examples go into which step: resuming with other values would silently train on another
    # data order, so the checkpoint records them and a mismatch is an error.
    order = {"n_examples": len(examples), "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
             "seed": cfg.seed}
    state, best_weights, resumed_from = _State(), None, None
    if accelerator.is_main_process:
        _recover(checkpoint_dir)
    accelerator.wait_for_everyone()
    if (checkpoint_dir / "last").exists():
        state, best_weights = _load_checkpoint(checkpoint_dir / "last", params, optimizer, scheduler, order)
        resumed_from = state.step
        if _stateful(loss_fn) and (checkpoint_dir / "last" / LOSS_STATE).is_file():
            try:
                loss_fn.load_state_dict(json.loads((checkpoint_dir / "last" / LOSS_STATE).read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                raise CheckpointError(f"checkpoint {checkpoint_dir / 'last'}: unreadable {LOSS_STATE} "
                                      f"({type(exc).__name__}: {exc}); delete it to train from scratch") from exc

    def run_eval() -> None:
        nonlocal best_weights
        model.eval()
        with torch.no_grad():
            metric = float(evaluate(model))
        model.train()
        state.evals.append((state.step, metric))
        if state.best_metric is None or metric > state.best_metric:
            state.best_step, state.best_metric, state.evals_since_best = state.step, metric, 0
            best_weights = _snapshot(params)
        else:
            state.evals_since_best += 1

    def save() -> None:
        # Under `accelerate launch` every process holds the same weights: the main one writes the checkpoint.
        if accelerator.is_main_process:
            _save_checkpoint(checkpoint_dir, params, best_weights, optimizer, scheduler, state, order,
                             loss_fn.state_dict() if _stateful(loss_fn) else None)
        accelerator.wait_for_everyone()

    tokens, started = 0, time.perf_counter()
    model.train()
    try:
        epoch_groups: tuple[int, list] = (-1, [])
        while state.step < total_steps and not state.stopped_early:
            if epoch_groups[0] != state.epoch:
                epoch_groups = (state.epoch, _epoch_groups(len(examples), cfg, state.epoch))
            group = epoch_groups[1][state.step_in_epoch]
            # accelerate syncs (and we step) when its micro-batch counter hits grad_accum; start the counter so
            # that happens on this group's last micro-batch, also for the short group that can end an epoch.
            accelerator.step = cfg.grad_accum - len(group)
            micro_losses = []
            for idx in group:
                # Data parallel (`accelerate launch --num_processes N`): each process takes every N-th example of
                # the micro-batch and DDP averages the gradients; one process takes all of them.
                idx = idx[accelerator.process_index::accelerator.num_processes] or idx[-1:]
                tokens += sum(len(e.input_ids) for i in idx for e in (examples[i], *examples[i].extra))
                with accelerator.accumulate(wrapped):
                    if loss_fn is None:
                        loss = wrapped(**collate([examples[i] for i in idx], pad_token_id, accelerator.device)).loss
                    else:
                        loss = loss_fn(wrapped, [examples[i] for i in idx], pad_token_id, accelerator.device,
                                       step=state.step)
                    micro_losses.append(loss.detach().float())
                    # backward divides by grad_accum; rescale so a short group averages over its own size.
                    accelerator.backward(loss * (cfg.grad_accum / len(group)))
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(list(params.values()), 1.0)
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
            step_loss = torch.stack(micro_losses).mean().item()

            state.step += 1
            state.step_in_epoch += 1
            state.losses.append((state.step, step_loss))
            end_of_epoch = state.step_in_epoch == steps_per_epoch
            if end_of_epoch:
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
            if evaluate is not None and (state.step % cfg.eval_every == 0 if cfg.eval_every > 0 else end_of_epoch):
                run_eval()
                if 0 < cfg.patience <= state.evals_since_best and state.step < total_steps:
                    state.stopped_early = True
            # Saved after the evaluation so the checkpoint's RNG state is the one the next step starts from.
            if cfg.checkpoint_every > 0 and state.step % cfg.checkpoint_every == 0:
                save()
            if on_step is not None:
                on_step(state.step, step_loss)

        if evaluate is not None and state.step > 0 and (not state.evals or state.evals[-1][0] != state.step):
            run_eval()
        save()
        train_seconds = time.perf_counter() - started
        if evaluate is not None and best_weights is not None:
            _assign(params, best_weights)
    finally:
        # Undo accelerate's patching (the autocast forward on GPU) so the caller gets back a plain peft model.
        accelerator.unwrap_model(wrapped, keep_fp32_wrapper=False)
        model.eval()

    return TrainResult(
        steps=state.step, epochs_done=state.epoch + state.step_in_epoch / steps_per_epoch,
        losses=list(state.losses), evals=list(state.evals), best_step=state.best_step,
        best_metric=state.best_metric, stopped_early=state.stopped_early, resumed_from_step=resumed_from,
        train_seconds=train_seconds, tokens=tokens, tokens_per_s=tokens / max(train_seconds, 1e-9),
        peak_memory_mb=_peak_memory_mb(), device=accelerator.device.type,
        mixed_precision=str(accelerator.mixed_precision))


def _lr_groups(params: dict[str, torch.nn.Parameter], lr_by_prefix: dict[str, float]) -> list[dict]:
    """Optimizer groups: the parameters of each prefix at its rate, the rest (if any) at the default rate. A prefix
    that matches no trainable parameter is an error: a misspelt one would leave its parameters at the default."""
    groups, rest = {prefix: [] for prefix in lr_by_prefix}, []
    for name, p in params.items():
        prefix = next((x for x in lr_by_prefix if name.startswith(x)), None)
        (groups[prefix] if prefix is not None else rest).append(p)
    unmatched = [prefix for prefix, ps in groups.items() if not ps]
    if unmatched:
        raise ValueError(f"lr_by_prefix: no trainable parameter starts with {unmatched}")
    return ([{"params": rest}] if rest else []) + [{"params": ps, "lr": lr_by_prefix[prefix]}
                                                  for prefix, ps in groups.items()]


def _stateful(loss_fn) -> bool:
    return hasattr(loss_fn, "state_dict") and hasattr(loss_fn, "load_state_dict")


def _check_inputs(examples: Sequence[Example], cfg: TrainConfig) -> None:
    if len(examples) == 0:
        raise ValueError("no training examples: the example list is empty")
    if cfg.batch_size < 1 or cfg.grad_accum < 1:
        raise ValueError(f"batch_size ({cfg.batch_size}) and grad_accum ({cfg.grad_accum}) must be >= 1")
    for i, ex in enumerate(examples):
        n = len(ex.input_ids)
        if n > cfg.cutoff:
            raise ValueError(f"example {i} has {n} tokens, more than cutoff={cfg.cutoff}; truncate it before training")
        if len(ex.labels) != n:
            raise ValueError(f"example {i}: {n} input_ids but {len(ex.labels)} labels")
        if all(t == IGNORE_INDEX for t in ex.labels):
            raise ValueError(f"example {i} has no response tokens (every label is {IGNORE_INDEX})")


def _epoch_groups(n: int, cfg: TrainConfig, epoch: int) -> list[list[list[int]]]:
    """The optimizer steps of one epoch, each a list of micro-batches of example indices; a pure function of
    (n, batch_size, grad_accum, seed, epoch), which is what lets a resumed run skip exactly what was done."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
    micro = [perm[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
    return [micro[i:i + cfg.grad_accum] for i in range(0, len(micro), cfg.grad_accum)]


def collate(batch: list[Example], pad_token_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example; padding is masked out of attention and loss."""
    width = max(len(ex.input_ids) for ex in batch)
    input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    attention_mask = torch.zeros_like(input_ids)
    for row, ex in enumerate(batch):
        n = len(ex.input_ids)
        input_ids[row, :n] = torch.tensor(ex.input_ids)
        labels[row, :n] = torch.tensor(ex.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids.to(device), "labels": labels.to(device),
            "attention_mask": attention_mask.to(device)}


def _snapshot(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in params.items()}


def _assign(params: dict[str, torch.nn.Parameter], weights: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n])


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


# --- checkpoints -------------------------------------------------------------------------------------------------
# A checkpoint is written into `.last.tmp`, then swapped in with two renames: `last` -> `.last.old`,
# `.last.tmp` -> `last`. A crash at any point leaves either a complete `last`, or (between the renames) only a
# complete `.last.old`, which `_recover` moves back. A half-written folder is never called `last`.

def _recover(checkpoint_dir: Path) -> bool:
    """Finish or undo an interrupted swap; True when there is a checkpoint to resume from."""
    last, tmp, old = checkpoint_dir / "last", checkpoint_dir / ".last.tmp", checkpoint_dir / ".last.old"
    if not last.exists() and old.exists():
        os.replace(old, last)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return last.exists()


def _save_checkpoint(checkpoint_dir: Path, params, best_weights, optimizer, scheduler, state: _State,
                     order: dict, loss_state: dict | None = None) -> None:
    last, tmp, old = checkpoint_dir / "last", checkpoint_dir / ".last.tmp", checkpoint_dir / ".last.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_snapshot(params), tmp / "adapter.safetensors")
    if best_weights is not None:
        save_file(best_weights, tmp / "best_adapter.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
    torch.save(_get_rng(), tmp / "rng.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({**dataclasses.asdict(state), **order}, indent=1))
    if loss_state is not None:
        (tmp / LOSS_STATE).write_text(json.dumps(loss_state))
    for f in tmp.iterdir():  # on disk before the rename makes them "the" checkpoint
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if last.exists():
        os.replace(last, old)
    os.replace(tmp, last)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(path: Path, params, optimizer, scheduler, order: dict) -> tuple[_State, dict | None]:
    try:
        missing = [f for f in CHECKPOINT_FILES if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(f"missing {', '.join(missing)}")
        meta = json.loads((path / "trainer_state.json").read_text())
        weights = load_file(path / "adapter.safetensors")
        best = load_file(path / "best_adapter.safetensors") if (path / "best_adapter.safetensors").exists() else None
        opt = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=True)
        for w in (weights, best or weights):
            if set(w) != set(params) or any(w[n].shape != p.shape for n, p in params.items()):
                raise ValueError("its weights do not match the model's trainable parameters")
        state = _State(**{k: meta[k] for k in (f.name for f in dataclasses.fields(_State))})
        changed = {k: (meta.get(k), v) for k, v in order.items() if meta.get(k) != v}
        if changed:
            raise CheckpointError(f"checkpoint {path} was made with other settings (saved, now): {changed}; "
                                  f"resuming would train on another data order: delete it or restore the settings")
        state.losses, state.evals = [tuple(x) for x in state.losses], [tuple(x) for x in state.evals]
        _assign(params, weights)
        optimizer.load_state_dict(opt["optimizer"])
        scheduler.load_state_dict(opt["scheduler"])
        _set_rng(rng)  # last, after everything that might draw random numbers: the next step sees the saved state
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); delete it to "
                              f"train from scratch") from exc
    return state, best


def _get_rng() -> dict:
    np_state = np.random.get_state(legacy=False)  # its key array becomes a tensor: weights_only loads allow those
    np_state["state"] = {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                         "pos": int(np_state["state"]["pos"])}
    return {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng(rng: dict) -> None:
    random.setstate(rng["python"])
    key = rng["numpy"]["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state({**rng["numpy"], "state": {"key": key, "pos": rng["numpy"]["state"]["pos"]}})
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
