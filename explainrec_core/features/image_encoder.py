"""The image modality (and the CLIP text tower) of the `item_features` asset, with open_clip.

Why it looks like this:
- A CLIP model with random weights produces vectors that look fine (finite, unit norm) and mean nothing, so
  `load_clip` only ever loads the configured weights: an open_clip pretrained tag or a local checkpoint file. When
  loading fails it raises `ImageFeatureError`; it never retries with `pretrained=None`. An empty `pretrained`
  switches the image modality off (`ClipSpec.enabled`), and the caller says so.
- Item images come from a folder or an s3:// prefix, one file per item named `<item_id>.<ext>`. Catalogues are
  messy: a broken or truncated file is counted (with its name and the reason) and skipped, never fatal, so one bad
  poster does not stop a 100k-item run. What was skipped shows up in `ImageFeatures`' counts.
- S3 objects are listed up front (cheap) and downloaded one at a time while encoding, so a large catalogue never
  has to fit on local disk.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from explainrec_core.errors import ExplainRecError
from explainrec_core.progress import progress_bar

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})
MAX_CORRUPT_EXAMPLES = 20
_ITEM_STEM = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit() also accepts '²' and other digits


class ImageFeatureError(ExplainRecError):
    """CLIP weights cannot be loaded, or an image location cannot be read at all (single bad files are counted)."""


@dataclass(frozen=True)
class ClipSpec:
    """Which open_clip model to use. `pretrained` is an open_clip tag or a local checkpoint path; "" = off."""

    model: str
    pretrained: str
    batch_size: int = 32

    @property
    def enabled(self) -> bool:
        """No weights configured means no image modality, rather than an image modality of random weights."""
        return bool(self.pretrained.strip())


@dataclass
class LoadedClip:
    """A loaded model with the inference preprocessing that belongs to it (image size, mean/std)."""

    spec: ClipSpec
    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    embed_dim: int
    device: torch.device


class ImageSources(dict[int, str]):
    """item id -> image path or s3:// URI; also remembers the files that could not be assigned to an item.

    A plain dict to callers; `ignored` keeps the names of image files whose stem is not an item id (e.g.
    `notanid.png`) or that duplicate an item already found (`7.jpg` beside `7.png`), so the counts survive into
    `ImageFeatures` without a second listing.
    """

    def __init__(self, entries: dict[int, str] | None = None, *, location: str = "",
                 ignored: list[str] | None = None):
        super().__init__(entries or {})
        self.location = location
        self.ignored: list[str] = list(ignored or [])


@dataclass
class ImageFeatures:
    """Unit-length float32 CLIP image vectors by item id, with what happened to every item and file."""

    vectors: dict[int, np.ndarray]
    n_items: int
    encoded: int
    missing: int
    corrupt: int
    corrupt_examples: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason), first 20
    ignored_files: int = 0
    dim: int = 0
    model: str = ""
    pretrained: str = ""

    def summary(self) -> str:
        """One line for logs and run metadata."""
        return (f"image modality {self.model} ({self.pretrained}), dim {self.dim}: {self.encoded}/{self.n_items} "
                f"items encoded, {self.missing} without an image, {self.corrupt} unreadable, "
                f"{self.ignored_files} files ignored")


def load_clip(spec: ClipSpec, device: str | torch.device | None = None) -> LoadedClip:
    """Load `spec.model` with exactly the weights in `spec.pretrained`, or raise ImageFeatureError.

    open_clip resolves a tag (download from the Hugging Face Hub, or its cache) or loads a local file strictly, so
    a checkpoint of another architecture fails on its shapes instead of loading half the weights.
    """
    import open_clip  # heavy import (timm, transformers): only when images are actually encoded

    if not spec.enabled:
        raise ImageFeatureError(f"CLIP model '{spec.model}': no pretrained weights configured (pretrained is empty); "
                                "the image modality is off rather than run on random weights")
    target = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available()
                                                                          else "cpu")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(spec.model, pretrained=spec.pretrained,
                                                                     device=target)
    except Exception as e:  # open_clip raises RuntimeError, torch.load pickling/shape errors, OSError, ...
        raise ImageFeatureError(f"cannot load CLIP model '{spec.model}' with pretrained='{spec.pretrained}': "
                                f"{_first_line(e)}. {_load_hint(spec, open_clip)}") from e
    model.eval()
    return LoadedClip(spec, model, preprocess, _embed_dim(model, spec, open_clip), target)


def image_sources(location: str, item_ids: Iterable[int]) -> ImageSources:
    """Find `<item_id>.<jpg|jpeg|png|webp>` files in a folder or under an s3:// prefix (not recursive).

    Files for ids outside `item_ids` are left out silently (images of items not in this catalogue); image files
    whose stem is not an integer, and second files for the same item, are listed in `.ignored`.
    """
    wanted = {int(i) for i in item_ids}
    names = _list_s3(location) if location.startswith("s3://") else _list_folder(location)
    found: dict[int, str] = {}
    ignored: list[str] = []
    for name, source in sorted(names):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue  # README, .DS_Store, captions: not images, not worth a count
        if not _ITEM_STEM.fullmatch(stem):
            ignored.append(name)
            continue
        item = int(stem)
        if item not in wanted:
            continue
        if item in found:
            ignored.append(name)  # sorted order keeps the choice stable between runs
            continue
        found[item] = source
    return ImageSources(found, location=location, ignored=ignored)


def encode_images(spec: ClipSpec, sources: dict[int, str], item_ids: Iterable[int], *,
                  clip: LoadedClip | None = None) -> ImageFeatures:
    """Encode one image per item with CLIP's image tower; unreadable files are counted, not fatal.

    `clip` reuses an already loaded model (e.g. shared with `encode_texts_clip`); otherwise it is loaded here.
    """
    clip = clip or load_clip(spec)
    items = sorted({int(i) for i in item_ids})
    todo = [(i, sources[i]) for i in items if i in sources]
    vectors: dict[int, np.ndarray] = {}
    corrupt: list[tuple[str, str]] = []
    reader = _Reader()

    def flush(batch: list[tuple[int, torch.Tensor]]) -> None:
        pixels = torch.stack([t for _, t in batch]).to(clip.device)
        with torch.inference_mode():
            out = F.normalize(clip.model.encode_image(pixels).float(), dim=-1).cpu().numpy()
        vectors.update({item: out[k].astype(np.float32, copy=True) for k, (item, _) in enumerate(batch)})

    with progress_bar(len(todo), f"CLIP image features ({spec.model})") as advance:
        batch: list[tuple[int, torch.Tensor]] = []
        for item, source in todo:
            try:
                with Image.open(reader.open(source)) as img:
                    pixels = clip.preprocess(img.convert("RGB"))
            except ImageFeatureError:
                raise
            except Exception as e:  # truncated, not an image, unsupported mode, decompression bomb, ...
                corrupt.append((_name(source), _first_line(e)))
            else:
                batch.append((item, pixels))
                if len(batch) >= spec.batch_size:
                    flush(batch)
                    batch = []
            advance(1)
        if batch:
            flush(batch)

    return ImageFeatures(vectors=vectors, n_items=len(items), encoded=len(vectors), missing=len(items) - len(todo),
                         corrupt=len(corrupt), corrupt_examples=corrupt[:MAX_CORRUPT_EXAMPLES],
                         ignored_files=len(getattr(sources, "ignored", [])), dim=clip.embed_dim, model=spec.model,
                         pretrained=spec.pretrained)


def encode_texts_clip(spec: ClipSpec, texts: dict[int, str], *, clip: LoadedClip | None = None
                      ) -> dict[int, np.ndarray]:
    """Item texts through CLIP's text tower: unit float32 vectors in the same space as the image vectors.

    Used instead of MiniLM when CLIP weights are configured, so text and image features of an item are comparable.
    Texts longer than the model's context are truncated by open_clip's tokenizer.
    """
    import open_clip

    if not texts:
        return {}
    clip = clip or load_clip(spec)
    tokenizer = open_clip.get_tokenizer(spec.model)
    items = sorted(texts)
    vectors: dict[int, np.ndarray] = {}
    with progress_bar(len(items), f"CLIP text features ({spec.model})") as advance:
        for chunk in _chunks(items, spec.batch_size):
            tokens = tokenizer([texts[i] for i in chunk]).to(clip.device)
            with torch.inference_mode():
                out = F.normalize(clip.model.encode_text(tokens).float(), dim=-1).cpu().numpy()
            vectors.update({item: out[k].astype(np.float32, copy=True) for k, item in enumerate(chunk)})
            advance(len(chunk))
    return vectors


# --- helpers -----------------------------------------------------------------------------------------------------

class _Reader:
    """Opens a local path, or downloads an s3:// object into memory on demand (one client per encoding run)."""

    def __init__(self) -> None:
        self._client: Any = None

    def open(self, source: str) -> str | io.BytesIO:
        if not source.startswith("s3://"):
            return source
        from botocore.exceptions import BotoCoreError, ClientError

        if self._client is None:
            self._client = _s3_client()
        bucket, key = _split_s3(source)
        try:
            body = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise FileNotFoundError(f"{source} was listed but is gone") from e  # counted as one bad file
            raise ImageFeatureError(f"cannot download {source} from {_endpoint()}: {_first_line(e)}") from e
        except BotoCoreError as e:  # endpoint down, credentials missing: every file would fail the same way
            raise ImageFeatureError(f"cannot download {source} from {_endpoint()}: {_first_line(e)}") from e
        return io.BytesIO(body)


def _s3_client() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ImageFeatureError(f"{uri}: no bucket in the s3:// URI")
    return bucket, key


def _list_folder(location: str) -> list[tuple[str, str]]:
    folder = Path(location)
    if not folder.is_dir():
        raise ImageFeatureError(f"image folder {location} does not exist or is not a folder")
    return [(p.name, str(p)) for p in folder.iterdir() if p.is_file()]


def _list_s3(location: str) -> list[tuple[str, str]]:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = _split_s3(location)
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # s3://b/posters must not pick up s3://b/posters-old/...
    names: list[tuple[str, str]] = []
    try:
        pages = _s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix):]
                if name and "/" not in name:  # direct children only, as for a local folder
                    names.append((name, f"s3://{bucket}/{obj['Key']}"))
    except (BotoCoreError, ClientError) as e:
        raise ImageFeatureError(f"cannot list images under {location} at {_endpoint()}: {_first_line(e)}") from e
    return names


def _embed_dim(model: torch.nn.Module, spec: ClipSpec, open_clip: Any) -> int:
    config = open_clip.get_model_config(spec.model)
    if config and "embed_dim" in config:
        return int(config["embed_dim"])
    return int(model.visual.output_dim)


def _load_hint(spec: ClipSpec, open_clip: Any) -> str:
    if os.path.isfile(spec.pretrained):
        return (f"Check that the checkpoint was saved from a '{spec.model}' model (same open_clip config); "
                "open_clip loads it strictly")
    tags = open_clip.list_pretrained_tags_by_model(spec.model)
    if spec.pretrained in tags:
        return ("Pretrained tags are downloaded from the Hugging Face Hub on first use; where that is not reachable, "
                "save the weights to a file and set pretrained to its path")
    return (f"'{spec.pretrained}' is neither an existing checkpoint file nor a known tag for this model "
            f"(known tags: {', '.join(tags) or 'none'})")


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    size = max(1, size)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _name(source: str) -> str:
    return source.rsplit("/", 1)[-1] if source.startswith("s3://") else Path(source).name


def _first_line(error: BaseException, limit: int = 400) -> str:
    """The error's type and text on one line, cut short (state-dict errors list hundreds of keys)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text if len(text) <= limit else text[:limit] + " ..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
