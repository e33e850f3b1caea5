"""The joint loss of the attributed model (the paper's eq. 3): answer + explanation + consistency.

A training sequence is `prompt + answer + explanation + EOS`, where the answer is one token ("Yes"/"No") and
the explanation starts with the "." after it. With y the true answer, a' the other one and e the explanation:

    L_cls  = -log p(y | prompt)                                       (full-vocabulary CE at the answer position)
    L_exp  = -(1/|e|) sum_t log p(e_t | prompt, y, e_<t)              (mean token CE of the explanation)
    L_con  = -sum_a P(a | prompt) * log Q(a | prompt, e)              (a in {Yes, No})

    P(a | prompt)     = softmax over the Yes/No logits at the answer position (what scoring reads as P(Yes))
    Q(a | prompt, e)  = softmax over a of  sum_t log p(e_t | prompt, a, e_<t)

Q is the explanation's stance: which answer the explanation is more likely to follow. L_con is the
cross-entropy between the predicted answer and that stance: small when the model predicts Yes and its
explanation reads as a Yes explanation, large when they disagree. Its gradient makes the explanation less
likely after the answer the model does not predict (and pulls the prediction toward what the explanation
says). Computing Q needs the explanation scored after the other answer too: a second row per example,
identical except for the answer token, so the term costs one more forward pass (skipped when its weight is 0).

    L = w_cls * L_cls + w_exp * L_exp + w_con * L_con          (weights: params.yaml attribution.loss)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from explainrec_core.config import LossWeightsConfig
from explainrec_core.evaluation.scoring import left_pad
from explainrec_core.training.engine import Example


def consistency_loss(answer_logits: torch.Tensor, loglik: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_a P(a) log Q(a).

    `answer_logits` (batch, 2): the Yes and No logits at the answer position; `loglik` (batch, 2): the summed
    log-likelihood of the explanation after "Yes" and after "No".
    """
    p = torch.softmax(answer_logits.float(), dim=-1)
    log_q = torch.log_softmax(loglik.float(), dim=-1)
    return -(p * log_q).sum(-1).mean()


def _rows(examples: Sequence[Example], flipped: bool, pad: int, device):
    """Left-padded rows (every row ends at the last column, so the answer and explanation of every row fall in
    the last few columns and only those need the vocabulary projection); `flipped` swaps in the other answer."""
    seqs = []
    for ex in examples:
        seq = list(ex.input_ids)
        if flipped:
            seq[ex.answer_pos] = ex.flip_answer_id
        seqs.append(seq)
    return left_pad(seqs, pad, device)


def joint_terms(model, examples: Sequence[Example], pad_token_id: int, device, yes_id: int, no_id: int,
                with_consistency: bool = True) -> dict[str, torch.Tensor]:
    """The three loss terms for a batch of examples (see the module docstring)."""
    for ex in examples:
        if not 0 < ex.answer_pos < len(ex.input_ids) - 1 or ex.flip_answer_id < 0:
            raise ValueError("joint loss needs examples with answer_pos and flip_answer_id (see encode_explained)")
    n = len(examples)
    width = max(len(ex.input_ids) for ex in examples)
    # The last `keep` columns hold, for every row, the position predicting the answer and everything after it.
    keep = max(len(ex.input_ids) - ex.answer_pos for ex in examples) + 1
    first = width - keep  # column of logits[:, 0]
    answer_col = torch.tensor([width - len(ex.input_ids) + ex.answer_pos for ex in examples], device=device)
    rows = torch.arange(n, device=device)
    cols = torch.arange(first + 1, width, device=device)  # columns of the predicted tokens
    exp_mask = cols[None, :] > answer_col[:, None]  # explanation tokens (EOS included): after the answer

    def score(flipped: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask, positions = _rows(examples, flipped, pad_token_id, device)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        token = logp[:, :-1].gather(-1, ids[:, first + 1:, None]).squeeze(-1)  # log p(token at col | before)
        return logits[rows, answer_col - 1 - first].float(), ids[rows, answer_col], token

    answer_logits, true_answer, token = score(False)
    terms = {"classification": F.cross_entropy(answer_logits, true_answer),
             "explanation": -(token * exp_mask).sum() / exp_mask.sum().clamp(min=1)}
    if with_consistency:
        _, _, flipped_token = score(True)
        ll_true, ll_flip = (token * exp_mask).sum(-1), (flipped_token * exp_mask).sum(-1)
        is_yes = true_answer == yes_id
        loglik = torch.stack([torch.where(is_yes, ll_true, ll_flip), torch.where(is_yes, ll_flip, ll_true)], dim=-1)
        terms["consistency"] = consistency_loss(answer_logits[:, [yes_id, no_id]], loglik)
    return terms


def make_joint_loss(weights: LossWeightsConfig, yes_id: int, no_id: int):
    """A `loss_fn` for `training.engine.train`."""
    with_consistency = weights.consistency > 0

    def loss_fn(model, examples, pad_token_id, device) -> torch.Tensor:
        terms = joint_terms(model, examples, pad_token_id, device, yes_id, no_id, with_consistency)
        total = weights.classification * terms["classification"] + weights.explanation * terms["explanation"]
        if with_consistency:
            total = total + weights.consistency * terms["consistency"]
        return total

    return loss_fn


def encode_explained(tokenizer, prompt: str, response: str, answer_ids: dict[str, int]) -> Example:
    """prompt + "Yes. It is ..." + EOS, with the answer position and the other answer's token for L_con.

    Checks that the response starts with a single answer token and that swapping it for the other answer leaves
    the explanation's tokens unchanged (so both rows score the same explanation tokens).
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + response)["input_ids"]
    if full[: len(prompt_ids)] != prompt_ids:
        raise ValueError(f"the tokenizer merges the prompt end with the response {response!r}")
    answer = response.split(".", 1)[0]
    if answer not in answer_ids or full[len(prompt_ids)] != answer_ids[answer]:
        raise ValueError(f"the response {response!r} does not start with a single answer token")
    other = "No" if answer == "Yes" else "Yes"
    swapped = tokenizer(prompt + other + response[len(answer):])["input_ids"]
    if swapped[len(prompt_ids) + 1:] != full[len(prompt_ids) + 1:]:
        raise ValueError(f"the explanation tokenises differently after {other!r}: {response!r}")
    ids = full + [tokenizer.eos_token_id]
    labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
    return Example(input_ids=ids, labels=labels, answer_pos=len(prompt_ids), flip_answer_id=answer_ids[other])
