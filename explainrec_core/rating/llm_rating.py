"""The LLM's rating task (paper eq. 10): a verbalised star rating, P5's rating-prediction prompt in TALLRec's template.

    ### Instruction: Given the user's ratings of movies (1 to 5 stars), predict the rating the user will give the
    target movie by answering with a single number from 1 to 5.
    ### Input: User Ratings: "Toy Story (1995)" 5 stars, "Fargo (1996)" 4 stars
    Target movie: "Babe (1995)"
    ### Response: 4.

Why verbalised and not a regression head on the last hidden state: the digits are ordinary answer tokens, so the
task trains with the same answer-only loss, shares every LoRA weight, adds no parameters to save or verify, and is
scored exactly like Yes/No (the answer-token logits at the response position). The prediction is the expected
rating under the softmax over the five digit tokens, sum_r r * P(r): a continuous value, so RMSE is not stuck on
whole stars. The history shows the same items as the TALLRec prompt (the sample's last ratings, oldest dropped
first when over the cutoff), with their stars instead of the liked/disliked split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from explainrec_core.evaluation.scoring import left_pad
from explainrec_core.models.base_model import answer_token_ids
from explainrec_core.prompts import RESPONSE_MARKER, alpaca_prompt

RATING_INSTRUCTION = ("Given the user's ratings of movies (1 to 5 stars), predict the rating the user will give the "
                      "target movie by answering with a single number from 1 to 5.")
STARS = ("1", "2", "3", "4", "5")


def rating_response(rating: float) -> str:
    """The training answer: the rating rounded to whole stars, clipped to 1..5 (ML-100K's are whole already)."""
    return f"{int(min(5, max(1, round(rating))))}."


def rating_prompt(history: Sequence[tuple[str, float]], target: str, count_tokens: Callable[[str], int],
                  cutoff: int, response_tokens: int = 3) -> tuple[str, int]:
    """(prompt, history items used): `history` = (quoted title, rating) oldest first; the oldest items are dropped
    until prompt + answer fit `cutoff` tokens (never the target or the answer)."""
    items = list(history)
    while True:
        shown = ", ".join(f"{title} {rating:g} star{'s' if rating != 1 else ''}" for title, rating in items)
        text = alpaca_prompt(RATING_INSTRUCTION, f"User Ratings: {shown}\nTarget movie: {target}")
        if not items or count_tokens(text) + response_tokens <= cutoff:
            return text, len(items)
        items = items[1:]


def star_token_ids(tokenizer) -> dict[str, int]:
    """The first token of each of "1." .. "5." after the response marker (raises when two coincide)."""
    return answer_token_ids(tokenizer, RESPONSE_MARKER, STARS)


@torch.inference_mode()
def expected_ratings(model, tokenizer, prompts: Sequence[str], star_ids: dict[str, int], batch_size: int = 8,
                     on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """sum_r r * P(r | prompt) over the five star tokens, for each prompt (in the given order): batches longest
    first, left-padded with explicit positions (a padded prompt gets the logits it gets alone)."""
    device = next(model.parameters()).device
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    ids = torch.tensor([star_ids[s] for s in STARS], device=device)
    stars = torch.arange(1, 6, dtype=torch.float32, device=device)
    out = np.empty(len(encoded), dtype=np.float64)
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        rows = order[start: start + batch_size]
        input_ids, mask, positions = left_pad([encoded[i] for i in rows], tokenizer.pad_token_id, device)
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
        p = torch.softmax(logits[:, -1, :].float().index_select(-1, ids), dim=-1)
        out[rows] = (p @ stars).cpu().numpy()
        if on_batch:
            on_batch(len(rows))
    model.train(was_training)
    return out
