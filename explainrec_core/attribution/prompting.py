"""The attribution-enhanced instruction (the paper's eq. 1-2) and its ablation, token-budgeted.

    ### Instruction:
    Given the user's preference and unpreference, identify whether the user will like the target movie by
    answering "Yes." or "No.", then explain why.

    ### Input:
    User Preference: "Fargo (1996)" (Crime, 1990s), "Heat (1995)" (Action)
    User Unpreference: "Scream (1996)" (Horror)
    Whether the user will like the target movie "Jackie Brown (1997)" (Crime, 1990s, rated R; shares a writer
    with "Pulp Fiction (1994)")?

    ### Response:
    Yes. It is a Crime movie and is from the 1990s; the user liked "Fargo (1996)" and "Heat (1995)".

The reasons next to each history item are its attributes with the most positive (liked) / most negative
(disliked) log-odds for this user; the target carries its own attributes. The "w/o preference attribution"
ablation uses the same instruction, history and response, with the bare titles only (TALLRec's input).
All text from the data is sanitised and quoted (`prompts.sanitize`): a title is never an instruction.
"""

from __future__ import annotations

from dataclasses import dataclass

from explainrec_core.attribution.explanations import SampleContext, review_reference
from explainrec_core.prompts import alpaca_prompt, sanitize

EXPLAIN_INSTRUCTION = ('Given the user\'s preference and unpreference, identify whether the user will like the '
                       'target movie by answering "Yes." or "No.", then explain why.')
_TARGET = "\x00target\x00"
MAX_FACT_CHARS = 200


def _with_reasons(title: str, reasons: list[str]) -> str:
    return f"{title} ({', '.join(sanitize(r, 40) for r in reasons)})" if reasons else title


def _input(ctx: SampleContext, attributed: bool, reasons_per_item: int, target: str, slot: str = "",
           user_line: str = "") -> str:
    liked, disliked = [], []
    for item, title, is_liked in ctx.history:
        shown = _with_reasons(title + slot, ctx.reasons(item, is_liked, reasons_per_item)) if attributed \
            else title + slot
        (liked if is_liked else disliked).append(shown)
    return (f"{user_line}User Preference: {', '.join(liked)}\nUser Unpreference: {', '.join(disliked)}\n"
            f"Whether the user will like the target movie {target}?")


def target_text(ctx: SampleContext, attributed: bool, slot: str = "") -> str:
    facts = ctx.target_facts()[:MAX_FACT_CHARS] if attributed else ""
    return f"{ctx.target_title}{slot} ({facts})" if facts else ctx.target_title + slot


def prompt_parts(ctx: SampleContext, attributed: bool, reasons_per_item: int, slot: str = "",
                 user_line: str = "") -> tuple[str, str]:
    """(prefix, suffix): the prompt is prefix + suffix; the prefix is the same for every target of one history
    (it ends before the space ahead of the target, see evaluation/prefix_scoring.py) so rankers can share it.

    With `slot` (features/item_prompts.py's item-token marker) right after every title's closing quote and a
    `user_line` ahead of the history, the text is otherwise unchanged: removing them gives the plain prompt."""
    full = alpaca_prompt(EXPLAIN_INSTRUCTION, _input(ctx, attributed, reasons_per_item, _TARGET, slot, user_line))
    head, _, tail = full.rpartition(_TARGET)
    return head[:-1], " " + target_text(ctx, attributed, slot) + tail


def build_prompt(ctx: SampleContext, attributed: bool, reasons_per_item: int) -> str:
    prefix, suffix = prompt_parts(ctx, attributed, reasons_per_item)
    return prefix + suffix


@dataclass(frozen=True)
class ExplainPrompt:
    prompt: str
    context: SampleContext  # with the history actually shown
    n_history_dropped: int


def fit_prompt(ctx: SampleContext, attributed: bool, reasons_per_item: int, count_tokens, budget: int,
               rebuild) -> ExplainPrompt:
    """Drop the oldest history items until the prompt fits `budget` tokens. `rebuild(history)` recomputes the
    context for a shorter history (reasons are computed from the history that is shown)."""
    for start in range(len(ctx.history) + 1):
        shown = ctx if start == 0 else rebuild(ctx.history[start:])
        prompt = build_prompt(shown, attributed, reasons_per_item)
        if count_tokens(prompt) <= budget:
            return ExplainPrompt(prompt, shown, start)
    raise ValueError(f"even without history the prompt for {ctx.target_title} is longer than {budget} tokens")


def response_tokens(ctx: SampleContext, review: str | None, max_cited: int, count_tokens) -> int:
    """Tokens of the longer of the two responses this context can have (answer Yes or No): what a prompt leaves
    free for its response, so that the prompt never depends on the label."""
    return max(count_tokens(review_reference(label, review) or ctx.reference(label, max_cited)) for label in (0, 1))


def fit_explained_prompt(ctx: SampleContext, review: str | None, reasons_per_item: int, max_cited: int,
                         count_tokens, cutoff: int, rebuild) -> ExplainPrompt:
    """The attributed prompt of a training or evaluation sample: it fits `cutoff` tokens together with the longer
    possible response and EOS. The reference is rebuilt from the history actually shown, which can be longer than
    the full history's, so the reserve grows until the shown history's responses fit too (label-free throughout).
    """
    reserve = response_tokens(ctx, review, max_cited, count_tokens)
    while True:
        fitted = fit_prompt(ctx, True, reasons_per_item, count_tokens, cutoff - reserve - 1, rebuild)
        needed = response_tokens(fitted.context, review, max_cited, count_tokens)
        if needed <= reserve:
            return fitted
        reserve = needed
