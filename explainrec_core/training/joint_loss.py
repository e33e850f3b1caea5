"""The joint loss of the attributed model (the paper's eq. 3): answer + explanation + consistency.

A training sequence is `prompt + answer + explanation + EOS`, where the answer is one token ("Yes"/"No") and
the explanation starts with the "." after it. With y the true answer, e the reference explanation and ê the
model's OWN explanation (below):

    L_cls  = -log p(y | prompt)                                       (full-vocabulary CE at the answer position)
    L_exp  = -(1/|e|) sum_t log p(e_t | prompt, y, e_<t)              (mean token CE of the reference explanation)
    L_con  = -sum_a sg[P(a | prompt)] * log Q(a | prompt, ê)          (a in {Yes, No}; sg = stop-gradient)

    P(a | prompt)     = softmax over the Yes/No logits at the answer position (what scoring reads as P(Yes))
    Q(a | prompt, ê)  = softmax over a of  sum_t log p(ê_t | prompt, a, ê_<t)

ê is what the model itself would say: its greedy continuation of the prompt, first token restricted to Yes/No
(so the answer is the one P predicts), then the explanation up to the end of its first sentence (or EOS, or
`consistency_max_tokens`), generated without gradient in eval mode. Q is the stance of that explanation: after
which answer it is likelier. L_con is the cross-entropy between the predicted answer and that stance; with P
detached its gradient only reshapes the explanation (makes ê likelier after the predicted answer and less likely
after the other), so it never acts as a second label loss (L_cls alone trains the answer). Scoring the reference
e here instead, as an earlier version did, made L_con a function of the label, not of what the model says.

An example's ê is cached (keyed by its prompt) and regenerated when it is `consistency_every` optimizer steps
old; the cache is part of the training checkpoint (`state_dict`), so a resumed run sees the same ê.

Cost. The prompt runs once per batch with a KV cache; the answer + reference row and the Yes + ê and No + ê rows
are short continuations of that cache, so scoring ê costs two short rows rather than two more full forward passes.
Generating ê costs a no-grad prompt pass plus a few decoding steps. Weight 0 skips generation and the ê rows.

    L = w_cls * L_cls + w_exp * L_exp + w_con * L_con          (weights: params.yaml attribution.loss)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from explainrec_core.config import LossWeightsConfig
from explainrec_core.evaluation.prefix_scoring import _cache_argument, _key_values, _output_cache
from explainrec_core.evaluation.scoring import left_pad
from explainrec_core.training.engine import Example
from explainrec_core.training.task_weights import TaskWeighting

SENTENCE_END = (".", "!", "?")


def consistency_loss(answer_logits: torch.Tensor, loglik: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_a sg[P(a)] log Q(a).

    `answer_logits` (batch, 2): the Yes and No logits at the answer position (detached here: no gradient reaches
    the answer); `loglik` (batch, 2): the summed log-likelihood of the explanation after "Yes" and after "No".
    """
    p = torch.softmax(answer_logits.detach().float(), dim=-1)
    log_q = torch.log_softmax(loglik.float(), dim=-1)
    return -(p * log_q).sum(-1).mean()


def sentence_end_ids(tokenizer) -> frozenset[int]:
    """Tokens that end a sentence: their text ends in . ! or ? (before closing quotes or brackets)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return frozenset(i for i, t in enumerate(texts) if t.rstrip().rstrip("\"')]”’").endswith(SENTENCE_END))


def first_sentence(tokens: Sequence[int], stop_ids: frozenset[int], eos_id: int) -> list[int]:
    """`tokens` (an explanation, starting with the "." after the answer) up to and including the end of its
    first sentence or EOS; the leading "." closes the answer, not a sentence, so it never stops."""
    out = []
    for i, t in enumerate(tokens):
        out.append(int(t))
        if t == eos_id or (i > 0 and t in stop_ids):
            break
    return out


class _AnswerFirst(LogitsProcessor):
    """The first generated token is Yes or No, whichever the model prefers: the answer P(Yes) predicts."""

    def __init__(self, prompt_width: int, answer_ids: list[int]):
        self.prompt_width, self.answer_ids = prompt_width, answer_ids

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] != self.prompt_width:
            return scores
        allowed = torch.full_like(scores, float("-inf"))
        allowed[:, self.answer_ids] = 0.0
        return scores + allowed


class _FirstSentenceDone(StoppingCriteria):
    """A row is done once its explanation has a sentence end after the leading "." (EOS is handled by generate)."""

    def __init__(self, prompt_width: int, stop_ids: frozenset[int]):
        self.prompt_width, self.stop = prompt_width, torch.tensor(sorted(stop_ids))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        after_dot = input_ids[:, self.prompt_width + 2:]  # generated: answer, ".", then the sentence
        return torch.isin(after_dot, self.stop.to(input_ids.device)).any(-1)


def own_explanations(model, prompts: Sequence[Sequence[int]], yes_id: int, no_id: int, stop_ids: frozenset[int],
                     pad_token_id: int, eos_id: int, max_tokens: int) -> list[tuple[int, list[int]]]:
    """(predicted answer, ê) for each prompt: the model's greedy answer and the first sentence of its explanation
    after it (at most `max_tokens` tokens), without gradient and in eval mode (no LoRA dropout)."""
    base = getattr(model, "module", model)  # DDP wraps the peft model under `accelerate launch`
    device = next(base.parameters()).device
    ids, mask, _ = left_pad(prompts, pad_token_id, device)
    width = ids.shape[1]
    was_training = base.training
    base.eval()
    try:
        with torch.no_grad():
            out = base.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_tokens + 1, do_sample=False,
                                pad_token_id=pad_token_id, eos_token_id=eos_id,
                                logits_processor=LogitsProcessorList([_AnswerFirst(width, [yes_id, no_id])]),
                                stopping_criteria=StoppingCriteriaList([_FirstSentenceDone(width, stop_ids)]))
    finally:
        base.train(was_training)
    generated = out[:, width:].tolist()
    return [(row[0], first_sentence(row[1:], stop_ids, eos_id)) for row in generated]


def _tiled_cache(pairs, times: int):
    """A DynamicCache holding the prompt's per-layer keys/values `times` over along the batch (gradients flow)."""
    from transformers.cache_utils import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(pairs):
        cache.update(keys.repeat(times, 1, 1, 1), values.repeat(times, 1, 1, 1), layer)
    return cache


def joint_terms(model, examples: Sequence[Example], pad_token_id: int, device, yes_id: int, no_id: int,
                own: Sequence[Sequence[int]] | None = None) -> dict[str, torch.Tensor]:
    """The loss terms for a batch (see the module docstring); the consistency term only when `own` gives each
    example's own explanation ê (its tokens after the answer)."""
    for ex in examples:
        if not 0 < ex.answer_pos < len(ex.input_ids) - 1:
            raise ValueError("joint loss needs examples with answer_pos before an explanation (see encode_explained)")
    if own is not None and (len(own) != len(examples) or any(len(e) == 0 for e in own)):
        raise ValueError("`own` needs one non-empty explanation per example")
    n = len(examples)
    inner = getattr(model, "module", model)
    # 1. The prompts, left-padded (they all end in the last column): the answer logits and a KV cache.
    ids, mask, positions = left_pad([ex.input_ids[:ex.answer_pos] for ex in examples], pad_token_id, device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    answer_logits = out.logits[:, -1].float()
    true_answer = torch.tensor([ex.input_ids[ex.answer_pos] for ex in examples], device=device)
    # 2. Continuations of that cache, right-padded: answer + reference for every example, then Yes + ê and No + ê.
    rows = [ex.input_ids[ex.answer_pos:] for ex in examples]
    if own is not None:
        rows += [[yes_id, *e] for e in own] + [[no_id, *e] for e in own]
    times = len(rows) // n
    width = max(map(len, rows))
    lengths = torch.tensor([len(r) for r in rows], device=device)
    cont = torch.tensor([list(r) + [pad_token_id] * (width - len(r)) for r in rows], device=device)
    cont_mask = (torch.arange(width, device=device) < lengths[:, None]).long()
    prompt_len = mask.sum(-1).repeat(times)
    logits = model(input_ids=cont, attention_mask=torch.cat([mask.repeat(times, 1), cont_mask], dim=1),
                   position_ids=prompt_len[:, None] + torch.arange(width, device=device), use_cache=True,
                   **{_cache_argument(inner): _tiled_cache(_key_values(_output_cache(out)), times)}).logits
    # log p(token j+1 | prompt, row up to j); the answer token itself is predicted by the prompt pass above.
    targets = cont[:, 1:].masked_fill(cont_mask[:, 1:] == 0, -100)
    token = -F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, ignore_index=-100, reduction="none")
    main = token[:n]
    terms = {"classification": F.cross_entropy(answer_logits, true_answer),
             "explanation": -main.sum() / (targets[:n] != -100).sum().clamp(min=1)}
    if own is not None:
        loglik = torch.stack([token[n:2 * n].sum(-1), token[2 * n:].sum(-1)], dim=-1)  # (n, [after Yes, after No])
        terms["consistency"] = consistency_loss(answer_logits[:, [yes_id, no_id]], loglik)
    return terms


class JointLoss:
    """A stateful `loss_fn` for `training.engine.train`: the weighted terms, with the cache of each training
    example's own explanation ê (regenerated every `consistency_every` optimizer steps)."""

    def __init__(self, weights: LossWeightsConfig, yes_id: int, no_id: int, stop_ids: frozenset[int], eos_id: int):
        self.weights, self.yes_id, self.no_id = weights, yes_id, no_id
        self.stop_ids, self.eos_id = stop_ids, eos_id
        self.own: dict[str, tuple[int, int, list[int]]] = {}  # prompt key -> (step made, predicted answer, ê)
        self.generated = 0  # explanations generated so far (for cost reports and tests)
        self.last_terms: dict[str, float] = {}
        fixed = {"classification": weights.classification, "explanation": weights.explanation,
                 "consistency": weights.consistency}
        tasks = [t for t, w in fixed.items() if w > 0 or t == "classification"]
        self.weighting = TaskWeighting(tasks, fixed, weights.weighting, weights.dwa_window, weights.dwa_temperature)

    def param_groups(self) -> list[dict]:
        """Optimizer groups for the weighting's own parameters (uncertainty weighting's log-variances), trained with
        the model at `weighting_lr` and without weight decay (it would pull every task's weight together)."""
        return self.weighting.param_groups(self.weights.weighting_lr)

    @staticmethod
    def _key(example: Example) -> str:
        return hashlib.blake2b(str(example.input_ids[:example.answer_pos]).encode(), digest_size=12).hexdigest()

    def own_for(self, model, examples: Sequence[Example], pad_token_id: int, step: int) -> list[list[int]]:
        """Each example's ê, generating those that are missing or `consistency_every` steps old."""
        keys = [self._key(ex) for ex in examples]
        stale = [i for i, k in enumerate(keys)
                 if k not in self.own or step - self.own[k][0] >= self.weights.consistency_every]
        if stale:
            made = own_explanations(model, [examples[i].input_ids[:examples[i].answer_pos] for i in stale],
                                    self.yes_id, self.no_id, self.stop_ids, pad_token_id, self.eos_id,
                                    self.weights.consistency_max_tokens)
            for i, (answer, tokens) in zip(stale, made, strict=True):
                self.own[keys[i]] = (step, answer, tokens)
            self.generated += len(stale)
        return [self.own[k][2] for k in keys]

    def __call__(self, model, examples: Sequence[Example], pad_token_id: int, device, step: int = 0) -> torch.Tensor:
        w = self.weights
        own = self.own_for(model, examples, pad_token_id, step) if w.consistency > 0 else None
        terms = joint_terms(model, examples, pad_token_id, device, self.yes_id, self.no_id, own)
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        self.weighting.to(terms["classification"].device)
        return self.weighting({t: terms[t] for t in self.weighting.tasks}, step)

    def state_dict(self) -> dict:
        return {"own": {k: list(v) for k, v in self.own.items()}, "generated": self.generated,
                "weighting": self.weighting.state_dict_json()}

    def load_state_dict(self, state: dict) -> None:
        self.own = {k: (int(s), int(a), [int(t) for t in e]) for k, (s, a, e) in state["own"].items()}
        self.generated = int(state["generated"])
        if "weighting" in state:
            self.weighting.load_state_dict_json(state["weighting"])


def make_joint_loss(weights: LossWeightsConfig, tokenizer, answer_ids: dict[str, int]) -> JointLoss:
    """The `loss_fn` for `training.engine.train` (sentence ends and EOS read from `tokenizer`)."""
    stop_ids = sentence_end_ids(tokenizer) if weights.consistency > 0 else frozenset()
    return JointLoss(weights, answer_ids["Yes"], answer_ids["No"], stop_ids, tokenizer.eos_token_id)


def encode_explained(tokenizer, prompt: str, response: str, answer_ids: dict[str, int]) -> Example:
    """prompt + "Yes. It is ..." + EOS, with the answer's position; checks that the response starts with a single
    answer token (the one scoring reads P(Yes) from)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + response)["input_ids"]
    if full[: len(prompt_ids)] != prompt_ids:
        raise ValueError(f"the tokenizer merges the prompt end with the response {response!r}")
    answer = response.split(".", 1)[0]
    if answer not in answer_ids or full[len(prompt_ids)] != answer_ids[answer]:
        raise ValueError(f"the response {response!r} does not start with a single answer token")
    ids = full + [tokenizer.eos_token_id]
    labels = [-100] * len(prompt_ids) + ids[len(prompt_ids):]
    return Example(input_ids=ids, labels=labels, answer_pos=len(prompt_ids))
