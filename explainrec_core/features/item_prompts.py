"""The modality-aware prompt (paper eq. 9): TALLRec's prompt with a soft token after every title and a user token.

    User: <|item|>
    User Preference: "Toy Story (1995)"<|item|>, "Fargo (1996)"<|item|>
    User Unpreference: "Heavyweights (1994)"<|item|>
    Whether the user will like the target movie "Babe (1995)"<|item|>?

`<|item|>` is one added special token; its input embedding is replaced by the fused item (or user) vector
projected into the LLM's token space (features/item_token_model.py). Apart from the markers (and the user line)
the text is exactly the text-only prompt of the same sample, with the same history: `strip_slots` of a slotted
prompt gives the rec_prompts prompt back, and building one checks it, so with and without item tokens differ in
the soft tokens only. The marker follows the title's closing quote with no space: one token per title (a space
would cost a second one, +26% scoring time instead of ~+10%); prompts stay within the cutoff (ML-100K prompts are
at most ~270 of 640 tokens), and `slot_budget` says by how much a cutoff must grow for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from explainrec_core.attribution.explanations import SampleContext
from explainrec_core.attribution.prompting import prompt_parts
from explainrec_core.features.feature_bank import USER_SLOT, SlotRequest
from explainrec_core.prompts import REC_INSTRUCTION, alpaca_prompt, rec_input

SLOT = "<|item|>"
USER_LINE = f"User: {SLOT}\n"
_TARGET = "\x00target\x00"


def add_slot_token(tokenizer) -> int:
    """Register SLOT as one special token (idempotent) and return its id. The id is past the model's embedding
    table: it is never looked up, its position always gets a soft token."""
    if SLOT not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [SLOT]}, replace_extra_special_tokens=False)
    return tokenizer.convert_tokens_to_ids(SLOT)


def strip_slots(text: str) -> str:
    """The text-only prompt a slotted prompt was built from."""
    return text.replace(USER_LINE, "", 1).replace(SLOT, "")


def _split(history: Sequence[tuple[str, float, int]], like_threshold: float):
    liked = [(q, item) for q, rating, item in history if rating > like_threshold]
    disliked = [(q, item) for q, rating, item in history if rating <= like_threshold]
    return liked, disliked


def slotted_rec_prompt(history: Sequence[tuple[str, float, int]], target: tuple[str, int], like_threshold: float,
                       user_token: bool = True, text_prompt: str | None = None,
                       user: int | None = None) -> tuple[str, SlotRequest]:
    """(prompt, slots) for a shown history of (quoted title, rating, item id), oldest first, and the target
    (quoted title, item id), about `user` (the knowledge modality's subject). With `text_prompt` (the sample's
    rec_prompts prompt), checks that only the slots differ; ValueError otherwise (another history or title would be
    a confound, not an item token)."""
    for quoted, *_ in (*history, target):
        if SLOT in quoted:
            raise ValueError(f"an item title contains the slot marker {SLOT!r}: {quoted!r}")
    liked, disliked = _split(history, like_threshold)
    body = rec_input([f"{q}{SLOT}" for q, _ in liked], [f"{q}{SLOT}" for q, _ in disliked], f"{target[0]}{SLOT}")
    prompt = alpaca_prompt(REC_INSTRUCTION, (USER_LINE if user_token else "") + body)
    items = ((USER_SLOT,) if user_token else ()) + tuple(i for _, i in liked) + tuple(i for _, i in disliked) \
        + (target[1],)
    if text_prompt is not None and strip_slots(prompt) != text_prompt:
        raise ValueError("the slotted prompt differs from the text prompt in more than its slots "
                         f"(history or titles differ):\n{strip_slots(prompt)!r}\nvs\n{text_prompt!r}")
    return prompt, SlotRequest(items=items, liked=tuple(i for _, i in liked), user=user)


def slotted_parts(history: Sequence[tuple[str, float, int]], like_threshold: float,
                  user_token: bool = True, user: int | None = None) -> tuple[str, SlotRequest]:
    """The shared prefix of every candidate's slotted prompt for one user (everything before the space that
    precedes the target title, as prefix_scoring.rec_prompt_parts) and its slots; pair with `slotted_suffix`."""
    prompt, request = slotted_rec_prompt(history, (_TARGET, 0), like_threshold, user_token)
    head, sep, _ = prompt.rpartition(" " + _TARGET)
    if not sep:
        raise ValueError("cannot locate the target in the slotted prompt")
    return head, SlotRequest(items=request.items[:-1], liked=request.liked, user=user)


def slotted_suffix(target: tuple[str, int], liked: tuple[int, ...], user: int | None = None) -> tuple[str, SlotRequest]:
    """The per-candidate remainder: ' "Title (Year)"<|item|>?\\n\\n### Response:\\n' and its one slot."""
    prompt, _ = slotted_rec_prompt([], (_TARGET, 0), 0.0, user_token=False)
    tail = prompt[prompt.rindex(_TARGET) + len(_TARGET):]
    return f" {target[0]}{tail}", SlotRequest(items=(target[1],), liked=liked, user=user)


def _explain_request(ctx: SampleContext, user_token: bool, target: bool) -> SlotRequest:
    liked = tuple(item for item, _, is_liked in ctx.history if is_liked)
    disliked = tuple(item for item, _, is_liked in ctx.history if not is_liked)
    user = (USER_SLOT,) if user_token else ()
    return SlotRequest(items=user + liked + disliked + ((ctx.target,) if target else ()), liked=liked)


def slotted_explain_parts(ctx: SampleContext, reasons_per_item: int, user_token: bool = True
                          ) -> tuple[tuple[str, SlotRequest], tuple[str, SlotRequest]]:
    """The attributed prompt (attribution/prompting.py) with item tokens, as (prefix, its slots) and (suffix, the
    target's slot): a marker after every history title's and the target title's closing quote (before their
    reasons), and the user line ahead of the history. The prefix is shared by every target of one history."""
    texts = [t for _, t, _ in ctx.history] + [ctx.target_title]
    if any(SLOT in t for t in texts):
        raise ValueError(f"an item title contains the slot marker {SLOT!r}")
    prefix, suffix = prompt_parts(ctx, True, reasons_per_item, slot=SLOT, user_line=USER_LINE if user_token else "")
    request = _explain_request(ctx, user_token, target=False)
    # A marker inside reasons or facts (data text) would shift every later slot: refuse rather than misalign.
    if prefix.count(SLOT) != len(request.items) or suffix.count(SLOT) != 1:
        raise ValueError(f"the attributed prompt for item {ctx.target} holds item markers outside its titles")
    return (prefix, request), (suffix, SlotRequest(items=(ctx.target,), liked=request.liked))


def slotted_explain_prompt(ctx: SampleContext, reasons_per_item: int, user_token: bool = True,
                           text_prompt: str | None = None) -> tuple[str, SlotRequest]:
    """(prompt, slots) of the attributed prompt with item tokens; with `text_prompt` (the sample's explain_prompts
    prompt), checks that only the slots differ (ValueError otherwise, as `slotted_rec_prompt`)."""
    (prefix, _), (suffix, _) = slotted_explain_parts(ctx, reasons_per_item, user_token)
    prompt = prefix + suffix
    if text_prompt is not None and strip_slots(prompt) != text_prompt:
        raise ValueError("the slotted attributed prompt differs from the text prompt in more than its slots:\n"
                         f"{strip_slots(prompt)!r}\nvs\n{text_prompt!r}")
    return prompt, _explain_request(ctx, user_token, target=True)


def slot_budget(n_history: int, user_token: bool = True) -> int:
    """Tokens the slots add to a prompt with `n_history` titles (one marker per title and the target, at most one
    more where a marker splits a token of the text-only prompt), plus the user line."""
    return 2 * (n_history + 1) + (6 if user_token else 0)
