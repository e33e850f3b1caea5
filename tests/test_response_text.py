"""What a person reads: generation stops at the end of the explanation's sentence, template markers are gone."""

from __future__ import annotations

import pytest
import torch

from explainrec_core.attribution.response_text import (
    clean_response,
    complete_sentences,
    phrase_stance,
    split_answer,
    strip_markers,
)
from explainrec_core.evaluation.generation import SentenceStop, generate


def test_markers_are_stripped_and_a_new_prompt_section_ends_the_text():
    raw = 'Yes.\n### Explanation:\nThe user likes Crime movies.\n\n### Instruction:\nGiven the user'
    assert clean_response(raw) == "Yes. The user likes Crime movies."
    assert clean_response("### Response: No. Response: It is a Horror movie.") == "No. It is a Horror movie."
    assert strip_markers("Yes. ### It is ###") == "Yes. It is"
    assert split_answer("Yes.\n### Explanation:\nIt is a Crime movie.") == ("Yes", "It is a Crime movie.")
    # a continuation generated after the answer word the scorer chose
    assert clean_response(". It is a Crime movie. More.", answer="No") == "No. It is a Crime movie."


def test_sentences_end_outside_titles_and_abbreviations():
    text = 'Yes. The user liked "Mr. Holland\'s Opus (1995)" and Dr. Strangelove. Then more. And more'
    assert clean_response(text) == 'Yes. The user liked "Mr. Holland\'s Opus (1995)" and Dr. Strangelove.'
    assert clean_response(text, sentences=2).endswith("Strangelove. Then more.")
    # while generating, "It is a movie." may still go on ("...movie.com"): one more token decides
    assert complete_sentences("Yes. It is a movie.") == 0 and complete_sentences("Yes. It is a movie. The") == 1
    assert complete_sentences("Yes.") == 0  # the answer is no explanation sentence


def test_phrase_stance():
    assert phrase_stance("Yes. The user will not like this movie.") == -1
    assert phrase_stance("Yes. The user won\u2019t enjoy it.") == -1
    assert phrase_stance("No. The user would like it because they enjoy dramas.") == 1
    assert phrase_stance('Yes. It is a movie like "Heat (1995)".') == 0  # "like" as a preposition takes no side
    assert phrase_stance("No. It is a Horror movie.") == 0


def test_the_stopping_criterion_fires_one_token_after_the_sentence(tokenizer):
    prompt = tokenizer("### Response:\n")["input_ids"]
    response = tokenizer('Yes.\n### Explanation:\nThe user liked "Mr. Smith (1939)". The user')["input_ids"]
    stop = SentenceStop(tokenizer, len(prompt), sentences=1)
    fired = [bool(stop(torch.tensor([prompt + response[:n]]), None)[0]) for n in range(1, len(response) + 1)]
    first = fired.index(True)
    assert not any(fired[:first]) and all(fired[first:])
    assert tokenizer.decode(response[:first + 1]).endswith('(1939)". The')


class Scripted:
    """Forces a tiny LLM's greedy choice to follow a script per row (a forward hook rewriting the last logits)."""

    def __init__(self, model, scripts: list[list[int]]):
        self.scripts, self.step = scripts, 0
        self.handle = model.register_forward_hook(self)

    def __call__(self, module, args, output):
        logits = torch.full_like(output.logits[:, -1], -1e4)
        for row, script in enumerate(self.scripts):
            logits[row, script[min(self.step, len(script) - 1)]] = 1e4
        output.logits[:, -1] = logits
        self.step += 1
        return output


@pytest.fixture
def tiny_model(tiny_llm_dir):
    from explainrec_core.models.base_model import load_causal_lm

    return load_causal_lm(tiny_llm_dir, dtype=torch.float32)


def test_generation_stops_each_row_at_its_sentence_end(tiny_model, tokenizer):
    texts = [" It is a Crime movie. The user liked it a lot and more words follow here",
             ' The user liked "Fargo (1996)" and "Heat (1995)" very much, so it fits. Then more']
    scripts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    prompts = ["### Response:\nYes", "### Input:\nA much longer prompt here.\n### Response:\nYes"]
    hook = Scripted(tiny_model, [scripts[1], scripts[0]])  # generate() runs the longer prompt first
    try:
        out = generate(tiny_model, tokenizer, prompts, max_new_tokens=30, batch_size=2)
    finally:
        hook.handle.remove()
    assert out[0] == "It is a Crime movie. The" and out[1] == 'The user liked "Fargo (1996)" and "Heat (1995)" very ' \
                                                             'much, so it fits. Then'
    assert [clean_response(t, answer="Yes") for t in out] == [
        "Yes. It is a Crime movie.", 'Yes. The user liked "Fargo (1996)" and "Heat (1995)" very much, so it fits.']
    hook = Scripted(tiny_model, [scripts[0]])
    try:
        unstopped = generate(tiny_model, tokenizer, prompts[:1], max_new_tokens=12, batch_size=1, sentences=None)
    finally:
        hook.handle.remove()
    assert len(tokenizer(unstopped[0], add_special_tokens=False)["input_ids"]) >= 11  # ran to max_new_tokens
