"""Chat-REC's parts: item-based CF retrieval against a hand computation, and the chat prompt."""

from __future__ import annotations

import polars as pl

from explainrec_core.baselines.base import TrainingData
from explainrec_core.models.base_model import answer_token_ids
from explainrec_core.steps.chatrec_steps import ItemKNN, chat_prompt, chatrec_message


def _data(likes: list[tuple[int, int]]) -> TrainingData:
    inter = pl.DataFrame({"user_id": [u for u, _ in likes], "item_id": [i for _, i in likes],
                          "rating": [5.0] * len(likes), "timestamp": list(range(len(likes)))})
    items = pl.DataFrame({"item_id": [1, 2, 3, 4, 5], "title": list("abcde"), "year": [2000] * 5})
    train = inter.select("user_id", "item_id", "timestamp").with_columns(pl.lit("train").alias("split"))
    return TrainingData(train=train, interactions=inter, items=items, like_threshold=3.0)


def test_item_knn_retrieves_the_items_liked_by_the_same_users():
    # Users 1-3 like items 1 and 2; users 1 and 2 also like 3; user 4 likes 4 and 5.
    knn = ItemKNN(_data([(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1), (3, 2), (4, 4), (4, 5)]))
    # cos(1, 2) = 3 / (sqrt 3 sqrt 3) = 1; cos(1, 3) = 2 / (sqrt 3 sqrt 2) = 0.816; cos(1, 4) = 0
    assert abs(knn.similarity[0, 1] - 1.0) < 1e-6 and abs(knn.similarity[0, 2] - 2 / 6 ** 0.5) < 1e-6
    assert knn.retrieve([1], [5.0], 3.0, 2) == [2, 3]
    # rated items are never retrieved, liked or not; a disliked history item does not pull its neighbours
    assert knn.retrieve([1, 2], [5.0, 1.0], 3.0, 1) == [3]
    assert knn.retrieve([4], [1.0], 3.0, 2) == [1, 2]  # no liked item: item order (uninformative)


def test_chat_prompt_asks_in_the_models_chat_format(tokenizer):
    message = chatrec_message([('"Heat (1995)"', 4.0)], ['"Ronin (1998)"'], '"Alien (1979)"')
    assert "Heat (1995)\" (4 stars)" in message and "best first: \"Ronin (1998)\"" in message
    prompt = chat_prompt(tokenizer, message)
    assert prompt.rstrip("\n").endswith("assistant") and message in prompt
    ids = answer_token_ids(tokenizer, prompt)
    assert set(ids) == {"Yes", "No"} and ids["Yes"] != ids["No"]
