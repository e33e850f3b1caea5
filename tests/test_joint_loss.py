"""The joint loss (answer + explanation + consistency) and the explanation text metrics."""

from __future__ import annotations

import pytest
import sacrebleu
import torch

from explainrec_core.config import LossWeightsConfig
from explainrec_core.evaluation.text_metrics import bleu4, explanation_scores, rouge_l, strip_answer
from explainrec_core.models.base_model import load_causal_lm
from explainrec_core.training.joint_loss import consistency_loss, encode_explained, joint_terms, make_joint_loss

YES, NO = 10539, 5230
ANSWERS = {"Yes": YES, "No": NO}
PROMPT = "### Instruction:\nWill the user like it?\n\n### Response:\n"


def test_consistency_is_low_when_explanation_and_answer_agree():
    predicts_yes = torch.tensor([[3.0, -3.0]])  # P(Yes) ~ 1
    reads_as_yes = torch.tensor([[-5.0, -20.0]])  # log p(e | Yes) >> log p(e | No)
    reads_as_no = torch.tensor([[-20.0, -5.0]])
    assert consistency_loss(predicts_yes, reads_as_yes) < 0.05
    assert consistency_loss(predicts_yes, reads_as_no) > 10
    # undecided model: the loss is the mean of both stances
    half = consistency_loss(torch.tensor([[0.0, 0.0]]), reads_as_no)
    assert half == pytest.approx(0.5 * 15.0, rel=1e-3)


def test_consistency_gradient_moves_the_explanation_toward_the_predicted_answer():
    logits = torch.tensor([[2.0, -2.0]], requires_grad=True)  # predicts Yes
    loglik = torch.tensor([[-10.0, -9.0]], requires_grad=True)  # the explanation reads slightly more like No
    consistency_loss(logits, loglik).backward()
    # descending the loss raises log p(e | Yes) and lowers log p(e | No) ...
    assert loglik.grad[0, 0] < 0 < loglik.grad[0, 1]
    # ... and pulls the prediction toward the explanation's stance (No): d/d(logit Yes) > 0
    assert logits.grad[0, 0] > 0 > logits.grad[0, 1]


def test_encode_explained(tokenizer):
    ex = encode_explained(tokenizer, PROMPT, 'Yes. It is a Crime movie; the user liked "Fargo (1996)".', ANSWERS)
    assert ex.input_ids[ex.answer_pos] == YES and ex.flip_answer_id == NO
    assert ex.labels[: ex.answer_pos] == [-100] * ex.answer_pos and ex.input_ids[-1] == tokenizer.eos_token_id
    with pytest.raises(ValueError, match="single answer token"):
        encode_explained(tokenizer, PROMPT, "Maybe. Who knows.", ANSWERS)


def _examples(tokenizer):
    return [encode_explained(tokenizer, PROMPT, text, ANSWERS) for text in (
        'Yes. It is a Crime movie; the user liked "Fargo (1996)".',
        "No. It is a Horror movie and is from the 1990s; the user disliked \"Scream (1996)\".",
        "Yes. Its attributes say little about this user's taste.")]


def test_terms_equal_a_plain_unpadded_computation(tiny_llm_dir, tokenizer):
    model = load_causal_lm(tiny_llm_dir)
    examples = _examples(tokenizer)
    terms = joint_terms(model, examples, tokenizer.pad_token_id, torch.device("cpu"), YES, NO)
    cls, exp_sum, exp_n, con = [], 0.0, 0, []
    for ex in examples:  # one example at a time, no padding: the definition written out
        with torch.no_grad():
            rows = []
            for answer in (YES, NO):
                ids = list(ex.input_ids)
                ids[ex.answer_pos] = answer
                logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
                rows.append((logp, ids))
        logp, ids = rows[0] if ex.input_ids[ex.answer_pos] == YES else rows[1]
        cls.append(-logp[ex.answer_pos - 1, ex.input_ids[ex.answer_pos]])
        ll = []
        for lp, seq in rows:
            tok = [lp[t - 1, seq[t]] for t in range(ex.answer_pos + 1, len(seq))]
            ll.append(sum(tok))
        exp = [-logp[t - 1, ex.input_ids[t]] for t in range(ex.answer_pos + 1, len(ex.input_ids))]
        exp_sum, exp_n = exp_sum + float(sum(exp)), exp_n + len(exp)
        p = torch.softmax(logp[ex.answer_pos - 1, [YES, NO]], -1)
        q = torch.log_softmax(torch.stack(ll), -1)
        con.append(-(p * q).sum())
    assert terms["classification"].item() == pytest.approx(float(torch.stack(cls).mean()), rel=1e-4)
    assert terms["explanation"].item() == pytest.approx(exp_sum / exp_n, rel=1e-4)
    assert terms["consistency"].item() == pytest.approx(float(torch.stack(con).mean()), rel=1e-4)


def test_training_on_the_joint_loss_lowers_it(tiny_llm_dir, tokenizer, tmp_path):
    from explainrec_core.config import TrainConfig
    from explainrec_core.training.engine import train

    # every weight trainable: a 16-wide LoRA model barely moves a 49k-vocabulary loss in a few steps
    model = load_causal_lm(tiny_llm_dir)
    model.requires_grad_(True)
    examples = _examples(tokenizer)
    weights = LossWeightsConfig(classification=1.0, explanation=0.5, consistency=0.5)
    loss_fn = make_joint_loss(weights, YES, NO)
    cpu = torch.device("cpu")
    with torch.no_grad():
        before = joint_terms(model, examples, tokenizer.pad_token_id, cpu, YES, NO)
    cfg = TrainConfig(lr=1e-2, epochs=10, batch_size=3, checkpoint_every=0, seed=0)
    result = train(model, examples, cfg, pad_token_id=tokenizer.pad_token_id, checkpoint_dir=tmp_path / "ckpt",
                   loss_fn=loss_fn)
    with torch.no_grad():
        after = joint_terms(model, examples, tokenizer.pad_token_id, cpu, YES, NO)
    assert result.losses[-1][1] < result.losses[0][1] - 0.5, result.losses
    for term in ("classification", "explanation", "consistency"):
        assert after[term] < before[term], (term, before, after)
    with pytest.raises(ValueError, match="answer_pos"):
        from explainrec_core.training.examples import encode
        loss_fn(model, [encode(tokenizer, PROMPT, "Yes.")], tokenizer.pad_token_id, torch.device("cpu"))


def test_bleu_and_rouge():
    refs = ['It is a Crime movie; the user liked "Fargo (1996)".'] * 2
    assert bleu4(refs, refs) == pytest.approx(1.0)
    hyps = ["It is a Crime movie.", "Nothing at all."]
    assert bleu4(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a").score / 100)
    # LCS("it is a movie", "it is a crime movie") = 4 tokens: P = 4/4, R = 4/5
    assert rouge_l("it is a movie", "it is a crime movie") == pytest.approx(2 * 1 * 0.8 / 1.8)
    assert rouge_l("", "anything") == 0.0 and rouge_l("a b", "c d") == 0.0
    assert strip_answer("Yes. It is.") == "It is." and strip_answer("Yesterday. X") == "Yesterday. X"
    scores = explanation_scores(["Yes. It is a Crime movie."], ["No. It is a Crime movie."])
    assert scores["bleu4"] == pytest.approx(1.0) and scores["rouge_l"] == pytest.approx(1.0)
