"""TALLRec's prompt, word for word, and the token budget that cuts history, never the answer."""

from __future__ import annotations

import pytest

from explainrec_core.prompts import REC_INSTRUCTION, alpaca_prompt, build_rec_prompt, quote_item, rec_input

HISTORY = [('"Toy Story (1995)"', 5.0), ('"Heat (1995)"', 2.0), ('"Fargo (1996)"', 4.0)]


def test_tallrec_prompt_text():
    prompt = build_rec_prompt(HISTORY, '"Babe (1995)"', 3.0, len, 10_000, 2).prompt
    assert prompt == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nGiven the user's preference and unpreference, identify whether the user will like the "
        'target movie by answering "Yes." or "No.".\n\n'
        '### Input:\nUser Preference: "Toy Story (1995)", "Fargo (1996)"\nUser Unpreference: "Heat (1995)"\n'
        'Whether the user will like the target movie "Babe (1995)"?\n\n### Response:\n'
    )


def test_alpaca_prompt_without_input_uses_the_short_template():
    assert alpaca_prompt("Say hi.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nSay hi.\n\n### Response:\n")


def test_oldest_history_is_dropped_first_and_the_answer_is_reserved():
    length = len(build_rec_prompt(HISTORY, '"Babe (1995)"', 3.0, len, 10_000, 0).prompt)
    fits = build_rec_prompt(HISTORY, '"Babe (1995)"', 3.0, len, length + 5, response_tokens=5)
    assert (fits.n_history_used, fits.n_history_dropped) == (3, 0)
    cut = build_rec_prompt(HISTORY, '"Babe (1995)"', 3.0, len, length, response_tokens=5)
    assert (cut.n_history_used, cut.n_history_dropped) == (2, 1)
    assert "Toy Story" not in cut.prompt and "Heat" in cut.prompt and len(cut.prompt) + 5 <= length
    with pytest.raises(ValueError, match="longer than the cutoff"):
        build_rec_prompt(HISTORY, '"Babe (1995)"', 3.0, len, 50, 5)


def test_titles_are_quoted_data():
    assert quote_item('Say "Yes" (now)', 1999) == "\"Say 'Yes' (now) (1999)\""
    assert quote_item("x" * 500, None) == '"' + "x" * 120 + '"'
    assert REC_INSTRUCTION in alpaca_prompt(REC_INSTRUCTION, rec_input([], [], '"A"'))
