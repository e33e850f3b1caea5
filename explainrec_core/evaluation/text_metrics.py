"""Explanation quality: BLEU-4 (sacrebleu) and ROUGE-L against the reference explanations.

Both compare the explanation text only (the "Yes."/"No." answer in front is stripped from hypothesis and
reference; it would otherwise inflate the scores of a model that merely answers right). Tokenisation is
sacrebleu's `13a` (the WMT standard: punctuation split off, case kept) for both metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import sacrebleu
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

_TOKENIZE = Tokenizer13a()


def strip_answer(text: str) -> str:
    """'Yes. It is ...' -> 'It is ...' (only a leading Yes./No. answer is removed)."""
    head, sep, rest = text.strip().partition(".")
    return rest.strip() if sep and head.strip() in ("Yes", "No") else text.strip()


def bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 in [0, 1] (sacrebleu, tokenize='13a', one reference per hypothesis)."""
    if not hypotheses:
        return 0.0
    return sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize="13a").score / 100


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 of one pair: longest common token subsequence over hypothesis and reference lengths."""
    h, r = _TOKENIZE(hypothesis).split(), _TOKENIZE(reference).split()
    if not h or not r:
        return 0.0
    lcs = _lcs(h, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(h), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def explanation_scores(generated: Sequence[str], references: Sequence[str]) -> dict:
    hyps = [strip_answer(t) for t in generated]
    refs = [strip_answer(t) for t in references]
    return {"bleu4": bleu4(hyps, refs),
            "rouge_l": sum(rouge_l(h, r) for h, r in zip(hyps, refs, strict=True)) / max(len(hyps), 1),
            "n": len(hyps), "tokenize": "13a"}
