"""The image (and CLIP text) modality: real open_clip code on a tiny architecture, real photos, a real S3 endpoint.

No pretrained CLIP weights can be downloaded here, so a tiny open_clip model (same CLIP class, 64-px images) is
built, saved with torch.save and loaded back through `load_clip`'s real open_clip loading path.
"""

# ruff: noqa: F811  (the fixtures imported from tests/s3_server.py reappear as test arguments)

from __future__ import annotations

import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import open_clip
import pytest
import skimage
import torch
import torch.nn.functional as F
from PIL import Image

from explainrec_core.errors import ExplainRecError
from explainrec_core.features.image_encoder import (
    ClipSpec,
    ImageFeatureError,
    encode_images,
    encode_texts_clip,
    image_sources,
    load_clip,
)
from tests.s3_server import (
    aws_env,  # noqa: F401  (fixture)
    bucket,  # noqa: F401  (fixture)
    moto_server,  # noqa: F401  (fixture)
)

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
PHOTOS = {1: "astronaut.png", 2: "coffee.png", 3: "chelsea.png", 4: "rocket.jpg"}
TINY = "ExplainRecTest-TinyCLIP"
OTHER = "ExplainRecTest-OtherCLIP"  # other widths: a checkpoint of TINY must not load into it
DEEPER = "ExplainRecTest-DeeperCLIP"  # same widths, one more layer per tower: TINY's checkpoint lacks keys
EMBED_DIM = 32


def tiny_config(embed_dim: int, width: int, layers: int = 2) -> dict:
    return {"embed_dim": embed_dim,
            "vision_cfg": {"image_size": 64, "layers": layers, "width": width, "head_width": 32, "patch_size": 16},
            "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": width, "heads": 2, "layers": layers}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """Register the two tiny configs with open_clip, build TINY, save its state_dict the plain torch way."""
    folder = tmp_path_factory.mktemp("clip")
    (folder / f"{TINY}.json").write_text(json.dumps(tiny_config(EMBED_DIM, 64)))
    (folder / f"{OTHER}.json").write_text(json.dumps(tiny_config(48, 96)))
    (folder / f"{DEEPER}.json").write_text(json.dumps(tiny_config(EMBED_DIM, 64, layers=3)))
    open_clip.add_model_config(folder)
    torch.manual_seed(1234)
    model = open_clip.create_model(TINY, pretrained=None)
    path = folder / "ckpt.pt"
    torch.save(model.state_dict(), path)
    return path, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def spec(checkpoint) -> ClipSpec:
    return ClipSpec(model=TINY, pretrained=str(checkpoint[0]), batch_size=3)


@pytest.fixture(scope="module")
def clip(spec):
    return load_clip(spec, device="cpu")


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    """Four real photos as 1.png..4.jpg, a truncated JPEG, a text file posing as a PNG, a non-id file name."""
    folder = tmp_path / "images"
    folder.mkdir()
    for item, name in PHOTOS.items():
        shutil.copy(SKIMAGE_DATA / name, folder / f"{item}{Path(name).suffix}")
    (folder / "5.jpg").write_bytes((SKIMAGE_DATA / "rocket.jpg").read_bytes()[:100])
    (folder / "6.png").write_text("this is a caption, not a picture\n")
    shutil.copy(SKIMAGE_DATA / "astronaut.png", folder / "notanid.png")
    (folder / "README.txt").write_text("not an image: neither used nor counted\n")
    return folder


def reference_vector(clip, path: Path) -> np.ndarray:
    """CLIP by hand, outside the module: what encode_images must reproduce for one photo."""
    with Image.open(path) as img:
        pixels = clip.preprocess(img.convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        return F.normalize(clip.model.encode_image(pixels), dim=-1)[0].numpy()


def test_spec_without_weights_is_off_and_never_loads_random_weights(checkpoint):
    assert ClipSpec("ViT-B-32", "").enabled is False
    assert ClipSpec("ViT-B-32", "  ").enabled is False
    assert ClipSpec(TINY, str(checkpoint[0])).enabled is True
    with pytest.raises(ImageFeatureError, match="no pretrained weights configured"):
        load_clip(ClipSpec(TINY, ""))


def test_local_checkpoint_loads_exactly_the_saved_weights(spec, checkpoint, clip):
    saved = checkpoint[1]
    loaded = clip.model.state_dict()
    assert set(loaded) == set(saved)
    for key, value in saved.items():
        assert torch.equal(loaded[key], value), key
    assert clip.embed_dim == EMBED_DIM
    # a model built without the checkpoint differs: the equality above comes from loading, not from a seed
    torch.manual_seed(99)
    fresh = open_clip.create_model(TINY, pretrained=None).state_dict()
    assert not torch.equal(fresh["visual.conv1.weight"], saved["visual.conv1.weight"])


def test_folder_images_are_encoded_and_bad_files_counted(spec, clip, photo_dir):
    items = range(1, 8)  # 7 has no file
    sources = image_sources(str(photo_dir), items)
    assert sorted(sources) == [1, 2, 3, 4, 5, 6]
    assert sources.ignored == ["notanid.png"]

    feats = encode_images(spec, sources, items, clip=clip)
    assert (feats.n_items, feats.encoded, feats.corrupt, feats.missing, feats.ignored_files) == (7, 4, 2, 1, 1)
    assert sorted(feats.vectors) == [1, 2, 3, 4]
    assert sorted(name for name, _ in feats.corrupt_examples) == ["5.jpg", "6.png"]
    assert all(reason for _, reason in feats.corrupt_examples)
    assert (feats.dim, feats.model, feats.pretrained) == (EMBED_DIM, TINY, spec.pretrained)
    assert "4/7 items encoded" in feats.summary()

    matrix = np.stack([feats.vectors[i] for i in range(1, 5)])
    assert matrix.dtype == np.float32 and matrix.shape == (4, EMBED_DIM)
    assert np.isfinite(matrix).all()
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    for i in range(4):  # different photos, different vectors
        for j in range(i + 1, 4):
            assert not np.allclose(matrix[i], matrix[j], atol=1e-4), (i + 1, j + 1)
    # each vector is CLIP of that very photo (batched as 3 + 1 here, one at a time by hand)
    for item, name in PHOTOS.items():
        np.testing.assert_allclose(feats.vectors[item], reference_vector(clip, SKIMAGE_DATA / name), atol=1e-5)

    # the same image again, under another id and another batch size: the same vector
    shutil.copy(photo_dir / "3.png", photo_dir / "30.png")
    again = encode_images(ClipSpec(spec.model, spec.pretrained, batch_size=1),
                          image_sources(str(photo_dir), [3, 30]), [3, 30], clip=clip)
    assert again.encoded == 2 and again.corrupt == 0 and again.missing == 0
    np.testing.assert_allclose(again.vectors[30], again.vectors[3], atol=1e-6)
    np.testing.assert_allclose(again.vectors[3], feats.vectors[3], atol=1e-5)


def test_image_sources_naming_rules(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ["9.PNG", "10.jpeg", "11.WebP", "12.txt", "13.gif", "1.jpg", "1.png", "2x.jpg", "-3.png",
                 "99.png"]:
        (folder / name).write_bytes(b"x")
    (folder / "14.png").mkdir()  # a folder is not an image file
    sources = image_sources(str(folder), [1, 9, 10, 11, 12, 13, 14])
    assert sources == {1: str(folder / "1.jpg"), 9: str(folder / "9.PNG"), 10: str(folder / "10.jpeg"),
                       11: str(folder / "11.WebP")}
    assert sorted(sources.ignored) == ["-3.png", "1.png", "2x.jpg"]  # 99.png: an item outside the catalogue
    with pytest.raises(ImageFeatureError, match="does not exist"):
        image_sources(str(tmp_path / "nowhere"), [1])


def test_pretrained_tag_offline_fails_loudly(monkeypatch):
    # offline and an empty cache: the tag's weights cannot be found; no network wait even without HF_HUB_OFFLINE
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", "/nonexistent-explainrec-hf-cache")
    calls = []
    real = open_clip.create_model_and_transforms

    def spy(*args, **kwargs):
        calls.append(kwargs.get("pretrained"))
        return real(*args, **kwargs)

    monkeypatch.setattr(open_clip, "create_model_and_transforms", spy)
    with pytest.raises(ImageFeatureError) as err:
        load_clip(ClipSpec("ViT-B-32", "laion2b_s34b_b79k"))
    assert "ViT-B-32" in str(err.value) and "laion2b_s34b_b79k" in str(err.value)
    assert isinstance(err.value, ExplainRecError)
    assert calls == ["laion2b_s34b_b79k"]  # one attempt, never a fallback to random weights (pretrained=None)


def test_checkpoint_of_another_architecture_or_missing_file_fails(checkpoint, tmp_path):
    path = str(checkpoint[0])
    for other in (OTHER, DEEPER):
        with pytest.raises(ImageFeatureError) as err:
            load_clip(ClipSpec(other, path))
        assert f"'{other}'" in str(err.value) and path in str(err.value)
        assert "same open_clip config" in str(err.value)
    assert "Missing key" in str(err.value)  # DEEPER: open_clip's strict load_state_dict refused it
    missing = str(tmp_path / "no-such-ckpt.pt")
    with pytest.raises(ImageFeatureError, match="neither an existing checkpoint file nor a known tag"):
        load_clip(ClipSpec(TINY, missing))
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ImageFeatureError, match=TINY):
        load_clip(ClipSpec(TINY, str(garbage)))


def test_s3_images_are_listed_and_downloaded(spec, clip, moto_server, bucket, monkeypatch):
    s3 = moto_server.client()
    for item in (1, 3):
        name = PHOTOS[item]
        s3.put_object(Bucket=bucket, Key=f"posters/{item}{Path(name).suffix}", Body=(SKIMAGE_DATA / name).read_bytes())
    s3.put_object(Bucket=bucket, Key="posters/notanid.png", Body=b"x")
    s3.put_object(Bucket=bucket, Key="posters/sub/2.png", Body=b"x")  # not a direct child of the prefix
    s3.put_object(Bucket=bucket, Key="posters-old/2.png", Body=b"x")  # a sibling prefix, not this one
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)

    sources = image_sources(f"s3://{bucket}/posters", [1, 2, 3])
    assert sources == {1: f"s3://{bucket}/posters/1.png", 3: f"s3://{bucket}/posters/3.png"}
    assert sources.ignored == ["notanid.png"]

    feats = encode_images(spec, sources, [1, 2, 3], clip=clip)
    assert (feats.encoded, feats.missing, feats.corrupt, feats.ignored_files) == (2, 1, 0, 1)
    for item in (1, 3):
        np.testing.assert_allclose(feats.vectors[item], reference_vector(clip, SKIMAGE_DATA / PHOTOS[item]),
                                   atol=1e-5)

    with pytest.raises(ImageFeatureError, match="no-such-bucket-xyz"):
        image_sources("s3://no-such-bucket-xyz/posters/", [1])


def test_clip_text_tower(spec, clip):
    texts = {1: "a photo of an astronaut", 2: "a cup of coffee", 3: "a cat on a sofa"}
    vectors = encode_texts_clip(spec, texts)  # loads the checkpoint itself; batch_size 3 -> one batch
    assert sorted(vectors) == [1, 2, 3]
    matrix = np.stack([vectors[i] for i in (1, 2, 3)])
    assert matrix.dtype == np.float32 and matrix.shape == (3, EMBED_DIM)
    assert np.isfinite(matrix).all()
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(matrix[0], matrix[1], atol=1e-4) and not np.allclose(matrix[1], matrix[2], atol=1e-4)
    # batched two at a time, with the shared model: the same vectors
    small = encode_texts_clip(ClipSpec(spec.model, spec.pretrained, batch_size=2), texts, clip=clip)
    for i in texts:
        np.testing.assert_allclose(small[i], vectors[i], atol=1e-5)
    assert encode_texts_clip(spec, {}) == {}
