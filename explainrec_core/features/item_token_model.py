"""The LLM with item tokens: token embeddings, except at `<|item|>` positions, where the fused, projected item (or
user) vector goes (features/fusion.py, feature_bank.py, item_prompts.py).

`ItemTokenLM` is one nn.Module holding the (LoRA) LLM, the fusion and the feature bank, so the training engine sees
one model: its trainable parameters (the fusion's, and the LoRA's when they are trained) are optimised and
checkpointed together. Scoring goes through the same `embed`, passed to the scoring engine as a callback, so the
shared-prefix (KV-cached) scoring of item-token prompts equals full-prompt scoring as it does for text prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from explainrec_core.evaluation.prefix_scoring import score_after_prefix
from explainrec_core.features.feature_bank import FeatureBank, SlotRequest
from explainrec_core.features.fusion import ModalityFusion
from explainrec_core.training.engine import Example, collate


@dataclass(frozen=True)
class SlotExample(Example):
    """A training example whose prompt has item tokens: `request` says what each `<|item|>` stands for."""

    request: SlotRequest | None = None


class ItemTokenLM(nn.Module):
    def __init__(self, llm, fusion: ModalityFusion, bank: FeatureBank, slot_id: int) -> None:
        super().__init__()
        self.llm, self.fusion, self.bank, self.slot_id = llm, fusion, bank, slot_id
        if list(fusion.modalities) != list(bank.modalities):
            raise ValueError(f"the fusion attends over {fusion.modalities}, the features offer {bank.modalities}")

    def soft_tokens(self, requests: Sequence[SlotRequest]) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (all slots of all requests, in order; hidden_size), attention weights of the item slots)."""
        inputs = self.bank.slot_inputs(requests)
        device = next(self.fusion.parameters()).device
        tokens = torch.empty(inputs["n_slots"], self.fusion.spec.hidden_size, device=device)
        weights = torch.zeros(0, len(self.fusion.modalities), device=device)
        if len(inputs["item_positions"]):
            item_tokens, weights = self.fusion.item_tokens(
                {m: v.to(device) for m, v in inputs["features"].items()}, inputs["present"].to(device),
                inputs["context"].to(device), inputs["has_context"].to(device))
            tokens = tokens.index_copy(0, inputs["item_positions"].to(device), item_tokens)
        if len(inputs["user_positions"]):
            user_tokens = self.fusion.user_tokens(inputs["user_context"].to(device),
                                                  inputs["user_has_context"].to(device))
            tokens = tokens.index_copy(0, inputs["user_positions"].to(device), user_tokens)
        return tokens, weights

    def embed(self, input_ids: torch.Tensor, requests: Sequence[SlotRequest]) -> torch.Tensor:
        """Input embeddings of `input_ids` (rows, width) with every `<|item|>` replaced, row by row in order, by the
        soft tokens of that row's request. A row whose marker count differs from its request's slots raises."""
        is_slot = input_ids == self.slot_id
        counts = is_slot.sum(1).tolist()
        expected = [len(r.items) for r in requests]
        if counts != expected:
            raise ValueError(f"prompts hold {counts} item markers, their requests name {expected} items")
        table = self.llm.get_input_embeddings()
        embeds = table(input_ids.masked_fill(is_slot, 0))
        if not any(expected):
            return embeds
        tokens, _ = self.soft_tokens(requests)
        return embeds.masked_scatter(is_slot.unsqueeze(-1), tokens.to(embeds.dtype))

    def forward(self, input_ids: torch.Tensor, requests: Sequence[SlotRequest], **kwargs):
        return self.llm(inputs_embeds=self.embed(input_ids, requests), **kwargs)


def item_token_loss(model, examples: Sequence[SlotExample], pad_token_id: int, device, step: int = 0) -> torch.Tensor:
    """The answer's causal-LM loss with item tokens (the training engine's `loss_fn`)."""
    batch = collate(list(examples), pad_token_id, device)
    return model(batch["input_ids"], [ex.request for ex in examples], attention_mask=batch["attention_mask"],
                 labels=batch["labels"]).loss


def item_token_pairwise_loss(yes_id: int, no_id: int):
    """The ranking protocol's pairwise `loss_fn` (multimodal.ranking_loss: pairwise): each example is a liked
    target whose `extra` holds its unrated items asked about with the same shown history. Loss = the pointwise
    answer loss of every prompt (as item_token_loss) + BPR on the scorer's margin, -log sigmoid(m_liked - m_unrated)
    with m = logit(Yes) - logit(No) at the answer position (P(Yes) = sigmoid(m) is what scoring reads): the lists
    rank one user's candidates against each other, which a pointwise loss never compares directly."""
    def loss_fn(model, examples: Sequence[SlotExample], pad_token_id: int, device, step: int = 0) -> torch.Tensor:
        flat, pairs = [], []
        for ex in examples:
            flat.append(ex)
            liked = len(flat) - 1
            for negative in ex.extra:
                pairs.append((liked, len(flat)))
                flat.append(negative)
        batch = collate(flat, pad_token_id, device)
        logits = model(batch["input_ids"], [ex.request for ex in flat],
                       attention_mask=batch["attention_mask"]).logits.float()
        labels = batch["labels"]
        pointwise = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100)
        if not pairs:
            return pointwise
        answer_pos = (labels != -100).int().argmax(1)  # the first response token: the answer
        rows = torch.arange(len(flat), device=device)
        at_answer = logits[rows, answer_pos - 1]
        margin = at_answer[:, yes_id] - at_answer[:, no_id]
        liked, unrated = (torch.tensor(side, device=device) for side in zip(*pairs, strict=True))
        return pointwise - F.logsigmoid(margin[liked] - margin[unrated]).mean()

    return loss_fn


def item_token_joint_loss(classification: float, explanation: float):
    """The attributed model's `loss_fn` with item tokens: `classification` * the answer's full-vocabulary CE +
    `explanation` * the reference explanation's mean token CE (eq. 3's first two terms, as training/joint_loss.py),
    in one pass over prompt + response. Examples need `answer_pos` (training/joint_loss.encode_explained).

    No consistency term: this loss trains the fusion with the attributed LoRA frozen (CoLLM step 2); the consistency
    term only reshapes the explanation, which the frozen LoRA already learned with it (explain_adapter)."""
    def loss_fn(model, examples: Sequence[SlotExample], pad_token_id: int, device, step: int = 0) -> torch.Tensor:
        if any(ex.answer_pos <= 0 for ex in examples):
            raise ValueError("item_token_joint_loss needs examples with an answer position (encode_explained)")
        batch = collate(list(examples), pad_token_id, device)
        logits = model(batch["input_ids"], [ex.request for ex in examples],
                       attention_mask=batch["attention_mask"]).logits.float()
        rows = torch.arange(len(examples), device=device)
        pos = torch.tensor([ex.answer_pos for ex in examples], device=device)
        answer = F.cross_entropy(logits[rows, pos - 1], batch["input_ids"][rows, pos])
        labels = batch["labels"].clone()
        labels[rows, pos] = -100  # the explanation's tokens only (and EOS)
        text = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100)
        return classification * answer + explanation * text

    return loss_fn


def scoring_embedder(model: ItemTokenLM, requests: Sequence[SlotRequest]):
    """The scoring engine's `embed(rows, input_ids)` callback for prompts whose slots are `requests`."""
    def embed(rows: Sequence[int], input_ids: torch.Tensor) -> torch.Tensor:
        return model.embed(input_ids, [requests[r] for r in rows])

    return embed


def score_slotted_candidates(model: ItemTokenLM, tokenizer, prefix: tuple[str, SlotRequest],
                             suffixes: Sequence[tuple[str, SlotRequest]], answer_ids: dict[str, int],
                             batch_size: int):
    """P(Yes) of every candidate of one user: the slotted prefix (with its soft tokens) run once and KV-cached,
    then each candidate's slotted suffix after it (equal to scoring the full prompts: tests/test_item_tokens.py)."""
    text, request = prefix
    return score_after_prefix(
        model.llm, tokenizer(text)["input_ids"],
        [tokenizer(suffix, add_special_tokens=False)["input_ids"] for suffix, _ in suffixes], answer_ids,
        batch_size, tokenizer.pad_token_id, embed=scoring_embedder(model, [req for _, req in suffixes]),
        prefix_embed=lambda ids: model.embed(ids, [request]))


def token_embedding_norm(llm) -> float:
    """Mean L2 norm of the LLM's token embeddings: the scale soft tokens start at."""
    with torch.no_grad():
        return float(llm.get_input_embeddings().weight.float().norm(dim=-1).mean())
