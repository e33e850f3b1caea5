"""`explainrec recommend` and `explainrec explain`: the champion attributed model, for people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from explainrec_core.config import DEFAULT_PARAMS, load_config
from explainrec_core.errors import ExplainRecError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
EXIT_INPUT = 2

ParamsOption = Annotated[Path, typer.Option("--params", help="Settings file.")]
UserOption = Annotated[int, typer.Option("--user", help="User id (as in the interactions table).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _recommender(params: Path):
    from explainrec_core.recommend import Recommender

    with err.status("loading the champion model"):
        return Recommender(load_config(params), params.parent)


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    return typer.Exit(EXIT_INPUT)


STANCE = {1: "argues for liking", -1: "argues against liking", 0: "takes no side"}


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def _cited(citations) -> str:
    """"Crime (item ✓, history ✓)": true of the item; the shown history leans the answer's way on it."""
    return ", ".join(f"{c.label} (item {_mark(c.true_of_item)}, history {_mark(c.history_supports_answer)})"
                     for c in citations) or "-"


def recommend(user: UserOption, k: Annotated[int, typer.Option("--k", help="How many items.")] = 10,
              candidates: Annotated[int, typer.Option(help="Popular unrated items the LLM re-ranks.")] = 100,
              as_json: JsonOption = False, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Top-K items for a user, each with the model's explanation."""
    try:
        rec = _recommender(params)
        with err.status(f"ranking {candidates} candidates and explaining the top {k}"):
            results = rec.recommend(user, k, candidates)
    except (ExplainRecError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        out.print_json(json.dumps([r.to_dict() for r in results]))
        return
    table = Table(title=f"Top {k} for user {user} (of the {candidates} most popular items they have not rated)")
    for col in ("#", "item", "title", "P(Yes)", "explanation", "cited attributes (item ✓ = true of the item; "
                "history ✓ = the user's history leans the answer's way on it)"):
        table.add_column(col, overflow="fold")
    for rank, r in enumerate(results, 1):
        table.add_row(str(rank), str(r.item_id), escape(r.title), f"{r.p_yes:.3f}", escape(r.explanation),
                      escape(_cited(r.citations)))
    out.print(table)


def explain(user: UserOption, item: Annotated[int, typer.Option("--item", help="Item id.")],
            as_json: JsonOption = False, params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Will this user like this item? The answer, P(Yes) and the explanation."""
    try:
        rec = _recommender(params)
        with err.status("scoring and explaining"):
            r = rec.explain(user, item)
            profile = rec.profile(user)
            knowledge = rec.knowledge(user, item)
    except ExplainRecError as exc:
        raise _fail(exc) from None
    if as_json:
        out.print_json(json.dumps({**r.to_dict(), "profile": profile, "knowledge_base": knowledge}))
        return
    out.print(f"[bold]user {user}[/], item {item}: {escape(r.title)}")
    out.print(f"answer: [bold]{r.answer}[/]   P(Yes) = {r.p_yes:.3f}")
    out.print(f"explanation: {escape(r.explanation)}   [dim]({STANCE[r.stance]})[/]")
    out.print(f"cited attributes: {escape(_cited(r.citations))}")
    out.print("[dim](item ✓: true of the item; history ✓: the user's history shown to the model leans the "
              "answer's way on it)[/]")
    likes = ", ".join(f"{label} ({lo:+.2f})" for label, lo in profile["likes"]) or "-"
    dislikes = ", ".join(f"{label} ({lo:+.2f})" for label, lo in profile["dislikes"]) or "-"
    out.print(f"[dim]in the training period the user leaned toward: {escape(likes)}; away from: "
              f"{escape(dislikes)} (smoothed log-odds)[/]")
    if knowledge is not None:
        groups = ", ".join(f"{g['group']} {g['p']:.2f} (weight {g['weight']:.2f})" for g in knowledge["groups"])
        n = knowledge["training_period_ratings"]
        out.print(f"[dim]knowledge base: people like this user like it with P = {knowledge['p_like']:.2f} "
                  f"({escape(groups) or escape(knowledge['evidence'])}); the user has {n} training-period ratings"
                  + (" (a new user: this is what was known about them before their own ratings)" if n == 0
                     else "") + "[/]")
