"""Rank many candidates for one user without recomputing the user: the prompt prefix runs once, KV-cached.

A TALLRec prompt is the same for every candidate item up to the target title. We split it into

    prefix = "...Whether the user will like the target movie"        (rec_prompt_parts)
    suffix = ' "Title (Year)"?\\n\\n### Response:\\n'                   (candidate_suffix)

run the prefix once with a cache, copy its keys/values to a batch of suffixes and read P(Yes) at each suffix's
last real token (the same softmax over the "Yes"/"No" logits as `scoring.score_yes`).

Token boundary. The model sees `prefix_ids + suffix_ids` (the prefix tokenised with the tokenizer's special
tokens, each suffix without). That equals the tokenisation of the full prompt string only when no token spans the
boundary. We split *before* the space that precedes the target: byte-level BPE tokenizers (SmolLM2, GPT-2 style)
start a word-piece at a space, so for SmolLM2 the ids are identical to tokenising the full prompt (tested on real
ML-100K prompts) and the scores equal `score_yes` on the full prompts. Splitting *after* the space
("...target movie " + '"Title..."') would not: SmolLM2 then gets a lone "Ġ" token and a '"' token instead of
its usual 'Ġ"' token, a sequence the model never sees in training. Other tokenizers (e.g. SentencePiece) may
still merge differently at the boundary; `boundary_matches` checks a tokenizer on given texts. Whatever the
tokenizer, the scores here equal a plain forward pass over `prefix_ids + suffix_ids` (tested).

The engine, `score_after_prefix`, works on token ids, so `scoring.score_yes` uses it too: there the prefix is
the Alpaca preamble and instruction that every prompt of a set shares.

Cost. On a CPU the suffixes' matrix products dominate (~75% of a 100-candidate list). Suffixes are batched
longest first, so a batch holds nearly one length (little padding, one or two vocab-projection positions), and
the prefix's keys/values are handed to the cache as broadcast views, copied once per layer by the cache's own
concatenation instead of three times. Measured single-threaded (process CPU time, 100 candidates of ~26 tokens
on a 222-token prefix, SmolLM2 fp32, batch 32): 12.0-13.1 s per list before, 11.2-11.4 s after; one batch of 100
is slower (13.3-14.9 s: larger attention and cache copies), so 32 stays.

Padding. Suffixes differ in length, so a batch is right-padded; the attention mask covers prefix + suffix (pad
keys masked), position ids continue from the prefix (prefix_len + arange), and the logits are taken at each
row's own last real position (passed to the model as `logits_to_keep` indices, so only those rows of the vocab
projection are computed). A pad query attends to real keys only, so it never produces NaNs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np
import torch

from explainrec_core.evaluation.quantize import int8_copy, is_int8
from explainrec_core.prompts import REC_INSTRUCTION, alpaca_prompt, rec_input

_TARGET = "\x00target\x00"  # stands in for the target title while splitting the template
Embed = Callable[[torch.Tensor], torch.Tensor]
"""input ids (1, n) -> input embeddings (1, n, hidden): the prefix of a prompt with soft tokens."""
RowEmbed = Callable[[Sequence[int], torch.Tensor], torch.Tensor]
"""(row indices, input ids (rows, width)) -> input embeddings: a batch of prompts (or suffixes) with soft tokens."""


def _template_parts(history: Sequence[tuple[str, float]], like_threshold: float) -> tuple[str, str]:
    liked = [item for item, rating in history if rating > like_threshold]
    disliked = [item for item, rating in history if rating <= like_threshold]
    full = alpaca_prompt(REC_INSTRUCTION, rec_input(liked, disliked, _TARGET))
    head, sep, tail = full.rpartition(_TARGET)  # the target is the last field of the prompt
    if not sep or _TARGET in tail:
        raise ValueError("cannot locate the target in the recommendation prompt")
    if not head.endswith(" "):
        raise ValueError("the recommendation prompt no longer has a space before the target")
    return head[:-1], " " + "{target}" + tail


def rec_prompt_parts(history: Sequence[tuple[str, float]], like_threshold: float) -> str:
    """The shared prefix of the TALLRec prompt for `history` ((quoted item, rating), oldest first).

    `rec_prompt_parts(h, t) + candidate_suffix(target)` is exactly the prompt `build_rec_prompt` builds when the
    history fits the cutoff (no history is dropped here: pass `history[-n:]` to shorten it).
    """
    return _template_parts(history, like_threshold)[0]


def candidate_suffix(target: str) -> str:
    """The per-candidate part of the prompt for a quoted target (`prompts.quote_item`), starting with a space."""
    return _template_parts([], 0.0)[1].replace("{target}", target)


def boundary_matches(tokenizer, prefix: str, suffixes: Sequence[str]) -> bool:
    """True when tokenising each full prompt gives exactly prefix ids + suffix ids (no token spans the split)."""
    prefix_ids = tokenizer(prefix)["input_ids"]
    return all(tokenizer(prefix + s)["input_ids"] == prefix_ids + tokenizer(s, add_special_tokens=False)["input_ids"]
               for s in suffixes)


def _cache_argument(model) -> str:
    """The forward keyword for a KV cache: `cache` in transformers >= 5.x (deprecated alias until 5.40),
    `past_key_values` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model passes kwargs on
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def _key_values(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values), each (1, kv_heads, prefix_len, head_dim), from any cache format."""
    if hasattr(cache, "layers"):  # transformers >= 4.56: Cache.layers[i].keys / .values
        pairs = [(layer.keys, layer.values) for layer in cache.layers]
    elif hasattr(cache, "to_legacy_cache"):  # older DynamicCache
        pairs = [(k, v) for k, v, *_ in cache.to_legacy_cache()]
    else:  # legacy tuple of (k, v)
        pairs = [(k, v) for k, v, *_ in cache]
    if any(k is None or v is None for k, v in pairs):
        raise ValueError("the model's cache has empty layers (sliding-window or shared-KV models are not supported)")
    return pairs


def _expanded_cache(pairs, batch: int):
    """A cache holding the prefix once per row. The rows are broadcast views: the cache's own concatenation
    (prefix + this batch's keys, in every layer's forward) is then the only copy made of the prefix."""
    from transformers.cache_utils import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(pairs):
        cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), layer)
    return cache


def prefix_cache(model, prefix_ids: Sequence[int], prefix_embed: Embed | None = None
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of one forward pass over `prefix_ids` (batch 1); `prefix_embed(ids)` gives the
    input embeddings when the prefix holds soft tokens (features/item_token_model.py)."""
    if not prefix_ids:
        raise ValueError("the prefix tokenises to nothing")
    device = next(model.parameters()).device
    ids = torch.tensor([list(prefix_ids)], device=device)
    inputs = {"inputs_embeds": prefix_embed(ids)} if prefix_embed is not None else {"input_ids": ids}
    out = model(**inputs, use_cache=True, logits_to_keep=1)
    return _key_values(_output_cache(out))


@torch.inference_mode()
def score_after_prefix(model, prefix_ids: Sequence[int], suffix_ids: Sequence[Sequence[int]],
                       answer_ids: dict[str, int], batch_size: int, pad_id: int | None = None,
                       on_batch: Callable[[int], None] | None = None, *, embed: RowEmbed | None = None,
                       prefix_embed: Embed | None = None) -> np.ndarray:
    """P(Yes) of the token sequence `prefix_ids + s` for each s in `suffix_ids` (in the given order); the prefix
    runs once and its KV cache is shared by every batch of suffixes.

    Prompts with soft tokens: `embed(rows, input_ids)` returns the input embeddings of a batch of suffixes (`rows`:
    their indices in `suffix_ids`), `prefix_embed(ids)` those of the prefix; without them the ids are embedded
    by the model's own table.

    Suffixes are batched longest first, so a batch holds suffixes of (nearly) one length: little padding, and the
    vocabulary projection runs for one or two positions per batch instead of one per distinct length.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(not ids for ids in suffix_ids):
        raise ValueError("a suffix tokenises to nothing: it needs at least one token to read P(Yes) from")
    scores = np.empty(len(suffix_ids), dtype=np.float64)
    if not suffix_ids:
        return scores
    device = next(model.parameters()).device
    yes_no = torch.tensor([answer_ids["Yes"], answer_ids["No"]], device=device)
    cache_arg = _cache_argument(model)
    pad = pad_id if pad_id is not None else 0
    n_prefix = len(prefix_ids)
    order = sorted(range(len(suffix_ids)), key=lambda i: -len(suffix_ids[i]))
    was_training = model.training
    model.eval()
    try:
        pairs = prefix_cache(model, prefix_ids, prefix_embed)
        for start in range(0, len(order), batch_size):
            rows_idx = order[start: start + batch_size]
            batch = [suffix_ids[i] for i in rows_idx]
            rows, width = len(batch), len(batch[0])
            lengths = torch.tensor([len(ids) for ids in batch], device=device)
            input_ids = torch.full((rows, width), pad, dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
            input_ids = input_ids.to(device)
            # Right padding: pad keys are masked, pad queries still see the (real) prefix, so no row is all -inf.
            suffix_mask = (torch.arange(width, device=device) < lengths[:, None]).long()
            attention_mask = torch.cat([torch.ones((rows, n_prefix), dtype=torch.long, device=device),
                                        suffix_mask], dim=1)
            position_ids = (n_prefix + torch.arange(width, device=device)).expand(rows, -1)
            keep, where = torch.unique(lengths - 1, return_inverse=True)  # only the positions someone needs
            inputs = {"inputs_embeds": embed(rows_idx, input_ids)} if embed is not None else {"input_ids": input_ids}
            logits = model(**inputs, attention_mask=attention_mask, position_ids=position_ids,
                           use_cache=True, logits_to_keep=keep, **{cache_arg: _expanded_cache(pairs, rows)}).logits
            logits = logits[torch.arange(rows, device=device), where]  # (rows, vocab): each row's last real token
            p_yes = torch.softmax(logits.float().index_select(-1, yes_no), dim=-1)[:, 0]
            scores[rows_idx] = p_yes.cpu().numpy()
            if on_batch:
                on_batch(rows)
    finally:
        model.train(was_training)
    return scores


def score_shared_prefix(model, tokenizer, prefix: str, suffixes: Sequence[str], answer_ids: dict[str, int],
                        batch_size: int = 32, *, int8: bool = False) -> np.ndarray:
    """P(Yes) for `prefix + suffix` for each suffix (in the given order), running the prefix once.

    `int8`: score with a merged, dynamically int8-quantised copy (`quantize.int8_copy`); pass a model that
    already is one to avoid quantising again for every candidate list.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prefix_ids = tokenizer(prefix)["input_ids"]
    if not prefix_ids:
        raise ValueError("the prefix tokenises to nothing")
    suffix_ids = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in suffixes]
    if int8 and suffixes and not is_int8(model):
        model = int8_copy(model)
    return score_after_prefix(model, prefix_ids, suffix_ids, answer_ids, batch_size, tokenizer.pad_token_id)
