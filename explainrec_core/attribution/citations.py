"""Citations: the phrases an explanation uses to name an attribute of the target, written and read back.

Reference explanations cite attributes in fixed phrases (`clause`):

    genre    is a Crime movie              mpaa     is rated R             imdb    is acclaimed on IMDb
    era      is from the 1990s             runtime  runs over two hours    tag     is tagged "dark comedy"
    person   shares a director with "Fargo (1996)"

A generated explanation is free text, so `parse_citations` also reads the ways people (and models) name the
same attributes: "a classic thriller", "Thriller movie", "genres: Drama", "science fiction", "the 90s",
"R-rated", "more than two hours", "the same director as "Fargo (1996)"". Free-text forms only count with a
`vocabulary` (kind -> the labels the catalogue has), so "a great movie" never becomes a genre; quoted text
(titles) is never read as an attribute: "Star Wars (1977)" does not cite War.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from explainrec_core.attribution.attributes import PERSON_KINDS


@dataclass(frozen=True)
class Citation:
    kind: str
    label: str  # the attribute's label; for persons the quoted title of the film shared with


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def clause(kind: str, label: str) -> str:
    """The phrase citing one attribute (for persons, `label` is the quoted title of the film shared with)."""
    if kind == "genre":
        return f"is {_article(label)} {label} movie"
    if kind == "era":
        return f"is from the {label}"
    if kind in ("mpaa", "imdb"):
        return f"is {label}"
    if kind == "runtime":
        return f"runs {label}"
    if kind == "tag":
        return f'is tagged "{label}"'
    if kind in PERSON_KINDS:
        return f"shares {_article(kind)} {kind} with {label}"
    raise ValueError(f"no phrase for attribute kind {kind!r}")


# The reference grammar: read back with or without a vocabulary.
_TEMPLATES = (
    ("genre", re.compile(r"\bis an? (.+?) movie\b")),
    ("era", re.compile(r"\bfrom the (\d{4}s)\b")),
    ("mpaa", re.compile(r"\b(rated (?:NC-17|PG-13|PG|G|R))\b")),
    ("runtime", re.compile(r"\bruns (over two hours|under 90 minutes)\b")),
    ("imdb", re.compile(r"\b(acclaimed on IMDb)\b")),
    ("tag", re.compile(r'\btagged "([^"]+)"')),
)
_PERSON = re.compile(r'\b(?:shares an?|(?:has |with )?the same) (director|writer|actor) (?:with|as) ("[^"]+")',
                     re.IGNORECASE)

# Free-text names of an attribute label -> extra spellings (plurals are added by `_spellings`).
_GENRE_ALIASES = {"Sci-Fi": ("science fiction", "sci fi", "scifi", "science-fiction"), "Romance": ("romantic",),
                  "Film-Noir": ("film noir", "noir"), "Children's": ("children", "childrens", "kids"),
                  "Animation": ("animated",), "Comedy": ("comedic",)}
_FREE = (  # (kind, pattern, label of the match)
    ("era", re.compile(r"\b((?:18|19|20)\d0)'?s\b"), lambda m: f"{m.group(1)}s"),
    ("era", re.compile(r"(?:\bthe |')([2-9]0)'?s\b"), lambda m: f"19{m.group(1)}s"),
    ("mpaa", re.compile(r"\brated (NC-17|PG-13|PG|G|R)\b|\b(NC-17|PG-13|PG|G|R)[- ]rat(?:ed|ing)\b|\b(NC-17|PG-13)\b"),
     lambda m: f"rated {next(g for g in m.groups() if g)}"),
    ("runtime", re.compile(r"\b(?:over|more than|longer than|above) (?:two|2) hours\b", re.IGNORECASE),
     lambda m: "over two hours"),
    ("runtime", re.compile(r"\b(?:under|less than|shorter than|below) (?:90|ninety) minutes\b", re.IGNORECASE),
     lambda m: "under 90 minutes"),
    ("imdb", re.compile(r"\b(?:acclaimed|highly rated on IMDb|critically praised)\b", re.IGNORECASE),
     lambda m: "acclaimed on IMDb"),
)


def _spellings(label: str) -> list[str]:
    words = [label, label.replace("-", " ")] + list(_GENRE_ALIASES.get(label, ()))
    plurals = [w[:-1] + "ies" if w.endswith("y") else w + "s" for w in words if not w.endswith("s")]
    return sorted(set(words + plurals), key=len, reverse=True)


def _genre_pattern(labels: set[str]) -> tuple[re.Pattern, dict[str, str]]:
    to_label = {s.lower(): label for label in labels for s in _spellings(label)}
    alternatives = "|".join(re.escape(s) for s in sorted(to_label, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])({alternatives})(?![\w-])", re.IGNORECASE), to_label


_genre_cache: dict[frozenset, tuple[re.Pattern, dict[str, str]]] = {}


def _mask_quotes(text: str) -> str:
    """Quoted spans (titles) blanked out, keeping every other character's position."""
    return re.sub(r'"[^"]*"', lambda m: " " * len(m.group(0)), text)


def parse_citations(text: str, vocabulary: dict[str, set[str]] | None = None) -> list[Citation]:
    """Attributes an explanation cites, in order of appearance, without duplicates. Without `vocabulary` only the
    reference phrases count; with it, free-text names too, and only labels the vocabulary has."""
    found: list[tuple[int, Citation]] = []
    for kind, pattern in _TEMPLATES:
        for m in pattern.finditer(text):
            if vocabulary is None or m.group(1) in vocabulary.get(kind, ()):
                found.append((m.start(), Citation(kind, m.group(1))))
    for m in _PERSON.finditer(text):
        found.append((m.start(), Citation(m.group(1).lower(), m.group(2))))
    if vocabulary is not None:
        unquoted = _mask_quotes(text)
        for kind, pattern, label_of in _FREE:
            for m in pattern.finditer(unquoted):
                if label_of(m) in vocabulary.get(kind, ()):
                    found.append((m.start(), Citation(kind, label_of(m))))
        genres = frozenset(vocabulary.get("genre", ()))
        if genres:
            if genres not in _genre_cache:
                _genre_cache[genres] = _genre_pattern(set(genres))
            pattern, to_label = _genre_cache[genres]
            found += [(m.start(), Citation("genre", to_label[m.group(1).lower()])) for m in pattern.finditer(unquoted)]
    seen, out = set(), []
    for _, c in sorted(found, key=lambda x: x[0]):
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out
