"""The P5 baseline's prompt families (baselines/p5.py): ID words, the scored prompt's shared prefix, history budgets."""

from __future__ import annotations

import pytest

from explainrec_core.baselines import p5
from explainrec_core.config import ConfigError, P5Config
from explainrec_core.evaluation.prefix_scoring import boundary_matches
from explainrec_core.prompts import RESPONSE_MARKER


def test_the_scored_prompt_is_its_shared_prefix_plus_the_candidate_suffix(tokenizer):
    prompt = p5.sequential_prompt(23, [5, 17, 1682], 7)
    assert prompt == p5.sequential_prefix(23, [5, 17, 1682]) + p5.sequential_suffix(7)
    assert "user_23" in prompt and "item_5, item_17, item_1682." in prompt and prompt.endswith(RESPONSE_MARKER)
    assert prompt.count("item_7?") == 1 and '"' not in prompt.replace('"Yes."', "").replace('"No."', "")  # no titles
    # SmolLM2's tokenizer: the ids of prefix + suffix are those of the whole prompt (prefix_scoring's boundary)
    assert boundary_matches(tokenizer, p5.sequential_prefix(23, [5, 17]), [p5.sequential_suffix(i)
                                                                            for i in (7, 1682, 99)])


def test_each_family_gives_its_example_and_next_item_only_for_liked_targets():
    liked = p5.P5Sample(user=3, item=42, label=1, rating=4.0, history=(1, 2))
    disliked = p5.P5Sample(user=3, item=43, label=0, rating=2.0, history=(1, 2))
    examples = {f: (prompt, answer) for f, prompt, answer in p5.family_examples(liked, p5.FAMILIES, liked.history)}
    assert examples["sequential"][1] == examples["direct"][1] == "Yes."
    assert examples["rating"][1] == "4" and examples["next_item"][1] == "item_42"
    assert "item_1, item_2" in examples["next_item"][0] and "item_42" not in examples["next_item"][0]
    assert "item_1" not in examples["direct"][0]  # P5's direct family knows the user by the ID word alone
    families = [f for f, _, _ in p5.family_examples(disliked, p5.FAMILIES, disliked.history)]
    assert families == ["sequential", "direct", "rating"]
    with pytest.raises(ValueError, match="unknown P5 family"):
        p5.family_examples(liked, ["review"], ())


def test_the_history_is_cut_oldest_first_and_an_impossible_budget_is_an_error():
    sample = p5.P5Sample(user=1, item=9, label=1, rating=5.0, history=(1, 2, 3, 4))
    assert p5.fitted_history(sample, lambda h: len(h) <= 2) == (3, 4)
    with pytest.raises(ValueError, match="user 1, item 9"):
        p5.fitted_history(sample, lambda h: False)


def test_the_scored_family_must_be_trained():
    with pytest.raises(ConfigError, match="sequential"):
        P5Config(families=("direct", "rating"))
    with pytest.raises(ConfigError, match="review"):
        P5Config(families=("sequential", "review"))
