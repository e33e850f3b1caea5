"""The joint loss (answer + explanation + consistency) and the explanation text metrics."""

from __future__ import annotations

import json

import pytest
import sacrebleu
import torch

from explainrec_core.config import LossWeightsConfig
from explainrec_core.evaluation.text_metrics import bleu4, explanation_scores, rouge_l, strip_answer
from explainrec_core.models.base_model import load_causal_lm
from explainrec_core.training.joint_loss import (
    consistency_loss,
    encode_explained,
    first_sentence,
    joint_terms,
    make_joint_loss,
    own_explanations,
    sentence_end_ids,
)

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


def test_consistency_gradient_moves_the_explanation_only():
    logits = torch.tensor([[2.0, -2.0]], requires_grad=True)  # predicts Yes
    loglik = torch.tensor([[-10.0, -9.0]], requires_grad=True)  # the explanation reads slightly more like No
    consistency_loss(logits, loglik).backward()
    # descending the loss raises log p(e | Yes) and lowers log p(e | No) ...
    assert loglik.grad[0, 0] < 0 < loglik.grad[0, 1]
    # ... and P is held fixed (stop-gradient): nothing reaches the answer logits, so the term is no label loss
    assert logits.grad is None or not logits.grad.any()


def test_encode_explained(tokenizer):
    ex = encode_explained(tokenizer, PROMPT, 'Yes. It is a Crime movie; the user liked "Fargo (1996)".', ANSWERS)
    assert ex.input_ids[ex.answer_pos] == YES
    assert ex.labels[: ex.answer_pos] == [-100] * ex.answer_pos and ex.input_ids[-1] == tokenizer.eos_token_id
    with pytest.raises(ValueError, match="single answer token"):
        encode_explained(tokenizer, PROMPT, "Maybe. Who knows.", ANSWERS)


RESPONSES = ('Yes. It is a Crime movie; the user liked "Fargo (1996)".',
             "No. It is a Horror movie and is from the 1990s; the user disliked \"Scream (1996)\".",
             "Yes. Its attributes say little about this user's taste.")


def _examples(tokenizer, responses=RESPONSES):
    # distinct prompts (of different lengths, so the batch is padded); the explanations are cached per prompt
    return [encode_explained(tokenizer, PROMPT.replace("it?", f"it?{' Really.' * i}"), text, ANSWERS)
            for i, text in enumerate(responses)]


def _tiny(tiny_llm_dir):
    model = load_causal_lm(tiny_llm_dir)
    with torch.no_grad():  # the default init (std 0.02) gives near-flat logits: widen them so greedy picks vary
        model.lm_head.weight.mul_(20)
    return model.eval()


def _greedy(model, prompt: list[int], stop_ids, eos: int, max_tokens: int) -> tuple[int, list[int]]:
    """The definition written out: full forward passes, one token at a time, no cache, no padding."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[0, -1]
        answer = YES if logits[YES] >= logits[NO] else NO
        seq, own = prompt + [answer], []
        while len(own) < max_tokens:
            token = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            seq.append(token)
            own.append(token)
            if token == eos or (len(own) > 1 and token in stop_ids):
                break
    return answer, own


def test_own_explanations_are_the_greedy_first_sentence(tiny_llm_dir, tokenizer):
    model = _tiny(tiny_llm_dir)
    prompts = [ex.input_ids[:ex.answer_pos] for ex in _examples(tokenizer)]
    eos = tokenizer.eos_token_id
    unstopped = [_greedy(model, p, frozenset(), eos, 8) for p in prompts]
    # make a token the first prompt generates 4th a "sentence end", so the stop rule is exercised
    stop_ids = frozenset({unstopped[0][1][3]})
    expected = [_greedy(model, p, stop_ids, eos, 8) for p in prompts]
    assert len(expected[0][1]) == 4
    got = own_explanations(model, prompts, YES, NO, stop_ids, tokenizer.pad_token_id, eos, 8)
    assert got == expected
    assert first_sentence([30, 30, 7, 30, 9], frozenset({30}), eos) == [30, 30]  # the leading "." never stops
    assert first_sentence([30, 7, eos, 9], frozenset({30}), eos) == [30, 7, eos]
    stops = sentence_end_ids(tokenizer)
    assert tokenizer.convert_tokens_to_ids(".") in stops and tokenizer.convert_tokens_to_ids("Ġmovie") not in stops


def test_terms_equal_a_plain_unpadded_computation(tiny_llm_dir, tokenizer):
    model = _tiny(tiny_llm_dir)
    examples = _examples(tokenizer)
    own = [[30, 657, 314, 2], [30, 657, 7704, 1200, 30], [30, 2]]  # ". It is<eos>", ". It movie ...", ".<eos>"
    terms = joint_terms(model, examples, tokenizer.pad_token_id, torch.device("cpu"), YES, NO, own)
    cls, exp_sum, exp_n, con = [], 0.0, 0, []
    for ex, e in zip(examples, own, strict=True):  # one example at a time, no padding: the definition written out
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ex.input_ids])).logits[0].float(), -1)
            ll = []
            for answer in (YES, NO):  # the model's own explanation after each answer
                seq = ex.input_ids[:ex.answer_pos] + [answer] + e
                lp = torch.log_softmax(model(input_ids=torch.tensor([seq])).logits[0].float(), -1)
                ll.append(sum(lp[t - 1, seq[t]] for t in range(ex.answer_pos + 1, len(seq))))
        cls.append(-logp[ex.answer_pos - 1, ex.input_ids[ex.answer_pos]])
        exp = [-logp[t - 1, ex.input_ids[t]] for t in range(ex.answer_pos + 1, len(ex.input_ids))]
        exp_sum, exp_n = exp_sum + float(sum(exp)), exp_n + len(exp)
        p = torch.softmax(logp[ex.answer_pos - 1, [YES, NO]], -1)
        con.append(-(p * torch.log_softmax(torch.stack(ll), -1)).sum())
    assert terms["classification"].item() == pytest.approx(float(torch.stack(cls).mean()), rel=1e-4)
    assert terms["explanation"].item() == pytest.approx(exp_sum / exp_n, rel=1e-4)
    assert terms["consistency"].item() == pytest.approx(float(torch.stack(con).mean()), rel=1e-4)


def test_consistency_reads_the_models_own_explanation_not_the_reference(tiny_llm_dir, tokenizer):
    model, cpu = _tiny(tiny_llm_dir), torch.device("cpu")
    weights = LossWeightsConfig(consistency=1.0, consistency_max_tokens=6)
    examples = _examples(tokenizer)
    # the same prompts and answers with other reference explanations
    other_refs = _examples(tokenizer, [r.split(".", 1)[0] + ". It is a Drama movie." for r in RESPONSES])
    loss = make_joint_loss(weights, tokenizer, ANSWERS)
    with torch.no_grad():
        loss(model, examples, tokenizer.pad_token_id, cpu)
        first = dict(loss.last_terms)
        loss(model, other_refs, tokenizer.pad_token_id, cpu)
    assert loss.last_terms["explanation"] != pytest.approx(first["explanation"], abs=1e-3)  # the reference moved
    assert loss.last_terms["consistency"] == pytest.approx(first["consistency"], abs=1e-6)  # L_con did not

    # it is the model's greedy explanation that L_con scores ...
    stops = sentence_end_ids(tokenizer)
    greedy = [_greedy(model, ex.input_ids[:ex.answer_pos], stops, tokenizer.eos_token_id, 6)[1] for ex in examples]
    with torch.no_grad():
        on_greedy = joint_terms(model, examples, tokenizer.pad_token_id, cpu, YES, NO, greedy)["consistency"]
        # ... and another explanation gives another value
        on_other = joint_terms(model, examples, tokenizer.pad_token_id, cpu, YES, NO,
                               [[30, 657, 314, 253, 17688, 7704, 30]] * 3)["consistency"]
    assert first["consistency"] == pytest.approx(on_greedy.item(), rel=1e-5)
    assert on_other.item() != pytest.approx(on_greedy.item(), abs=1e-3)


def test_generation_is_cached_and_skipped_at_weight_zero(tiny_llm_dir, tokenizer, monkeypatch):
    from explainrec_core.training import joint_loss

    model, cpu, examples = _tiny(tiny_llm_dir), torch.device("cpu"), _examples(tokenizer)
    rows = []
    model.register_forward_pre_hook(lambda m, args, kwargs: rows.append(kwargs["input_ids"].shape[0]),
                                    with_kwargs=True)
    loss = make_joint_loss(LossWeightsConfig(consistency=0.5, consistency_every=2), tokenizer, ANSWERS)
    with torch.no_grad():
        for step in range(3):
            loss(model, examples, tokenizer.pad_token_id, cpu, step=step)
    assert loss.generated == 6  # at step 0 and again at step 2; step 1 reuses them
    state = loss.state_dict()
    again = make_joint_loss(LossWeightsConfig(consistency=0.5, consistency_every=2), tokenizer, ANSWERS)
    again.load_state_dict(json.loads(json.dumps(state)))
    assert again.own == loss.own

    def no_generation(*args, **kwargs):
        raise AssertionError("generated with consistency weight 0")

    monkeypatch.setattr(joint_loss, "own_explanations", no_generation)
    rows.clear()
    off = make_joint_loss(LossWeightsConfig(consistency=0.0), tokenizer, ANSWERS)
    with torch.no_grad():
        off(model, examples, tokenizer.pad_token_id, cpu)
    assert rows == [3, 3] and "consistency" not in off.last_terms  # prompts, then answer + reference rows only
    with pytest.raises(AssertionError, match="weight 0"):  # the patch does catch generation
        make_joint_loss(LossWeightsConfig(consistency=0.5), tokenizer, ANSWERS)(model, examples,
                                                                                 tokenizer.pad_token_id, cpu)


def test_training_on_the_joint_loss_lowers_it(tiny_llm_dir, tokenizer, tmp_path):
    from explainrec_core.config import TrainConfig
    from explainrec_core.training.engine import train

    # every weight trainable: a 16-wide LoRA model barely moves a 49k-vocabulary loss in a few steps
    model = load_causal_lm(tiny_llm_dir)
    model.requires_grad_(True)
    examples = _examples(tokenizer)
    # explanations generated once (at step 0) and kept: L_con is then comparable before and after
    weights = LossWeightsConfig(classification=1.0, explanation=0.5, consistency=0.5, consistency_every=1000,
                                consistency_max_tokens=6)
    loss_fn = make_joint_loss(weights, tokenizer, ANSWERS)
    cpu = torch.device("cpu")
    own = loss_fn.own_for(model, examples, tokenizer.pad_token_id, step=0)
    with torch.no_grad():
        before = joint_terms(model, examples, tokenizer.pad_token_id, cpu, YES, NO, own)
    cfg = TrainConfig(lr=1e-2, epochs=10, batch_size=3, checkpoint_every=0, seed=0)
    result = train(model, examples, cfg, pad_token_id=tokenizer.pad_token_id, checkpoint_dir=tmp_path / "ckpt",
                   loss_fn=loss_fn)
    with torch.no_grad():
        after = joint_terms(model, examples, tokenizer.pad_token_id, cpu, YES, NO, own)
    assert loss_fn.generated == 3 and json.loads((tmp_path / "ckpt" / "last" / "loss_state.json").read_text())
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


def test_uncertainty_weighting_trains_its_log_variances_with_the_model_and_resumes(tiny_llm_dir, tokenizer,
                                                                                    tmp_path):
    """The engine puts the weighting's log-variances in its optimizer (their own rate) and the checkpoint keeps them:
    a run stopped after 3 steps and resumed ends with the same weights as one run straight through."""
    from explainrec_core.config import TrainConfig
    from explainrec_core.training.engine import train

    weights = LossWeightsConfig(classification=1.0, explanation=0.5, consistency=0.0, weighting="uncertainty",
                                weighting_lr=0.1)
    cfg = TrainConfig(lr=1e-3, epochs=6, batch_size=3, checkpoint_every=1, seed=0)

    def run(folder, on_step=None):
        model = load_causal_lm(tiny_llm_dir)
        model.requires_grad_(True)
        loss_fn = make_joint_loss(weights, tokenizer, ANSWERS)
        train(model, _examples(tokenizer), cfg, pad_token_id=tokenizer.pad_token_id, checkpoint_dir=folder,
              loss_fn=loss_fn, on_step=on_step)
        return loss_fn.weighting

    def crash_at_4(step, loss):
        if step == 4:
            raise RuntimeError("simulated crash")

    straight = run(tmp_path / "a")
    assert [w for _, w in straight.history][0] == {"classification": 0.5, "explanation": 0.5}
    assert straight.history[-1][1] != straight.history[0][1]  # the log-variances moved
    assert len(straight.history) == 6
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "b", on_step=crash_at_4)
    resumed = run(tmp_path / "b")
    assert resumed.history == straight.history
