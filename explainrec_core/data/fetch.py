"""Fetch real MovieLens-100K offline-safely: from the RecBole 1.2.1 wheel on PyPI.

GroupLens' own site is not reachable from every machine, but PyPI is, and the RecBole wheel ships the full
ML-100K as RecBole "atomic files" (.inter/.item/.user) plus Freebase links (.link/.kg). We download the wheel
with pip (so pip's cache and index settings apply), extract those files and check them against pinned
SHA-256 digests, so every machine gets byte-identical data. Nothing is committed to git: GroupLens' terms
forbid redistribution; DVC tracks the folder after the fetch.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from explainrec_core.errors import DataError
from explainrec_core.io import sha256_file, write_bytes

RECBOLE_WHEEL = "recbole==1.2.1"
_MEMBER_DIR = "recbole/dataset_example/ml-100k/"
ML100K_FILES = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    "ml-100k.link": "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948",
    "ml-100k.kg": "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779",
}
DATASETS = {"ml-100k": ML100K_FILES}


def default_cache_dir() -> Path:
    return Path(os.environ.get("EXPLAINREC_CACHE", Path.home() / ".cache" / "explainrec"))



def is_fetched(out_dir: Path, dataset: str = "ml-100k") -> bool:
    """True when every file is present with its pinned digest (so a fetch would change nothing)."""
    files = DATASETS[dataset]
    return all((out_dir / name).is_file() and sha256_file(out_dir / name) == digest for name, digest in files.items())


def download_wheel(requirement: str, cache_dir: Path) -> Path:
    """`pip download --no-deps` one wheel into `cache_dir/wheels` (reused when already there)."""
    return _pip_download(requirement, cache_dir / "wheels", "*.whl", ["--only-binary", ":all:"])


def download_sdist(requirement: str, cache_dir: Path) -> Path:
    """`pip download --no-deps` one source distribution into `cache_dir/sdists` (reused when already there).

    pip prepares an sdist's metadata while downloading it; projects versioned by setuptools_scm need
    SETUPTOOLS_SCM_PRETEND_VERSION_FOR_<NAME> for that, which we set to the requested version.
    """
    name, version = requirement.split("==")
    env = {f"SETUPTOOLS_SCM_PRETEND_VERSION_FOR_{name.upper().replace('-', '_')}": version}
    return _pip_download(requirement, cache_dir / "sdists", "*.tar.gz", ["--no-binary", name], env)


def _pip_download(requirement: str, folder: Path, pattern: str, flags: list[str], env: dict | None = None) -> Path:
    name, version = requirement.split("==")
    stems = {name, name.replace("-", "_")}

    def found() -> list[Path]:
        return sorted(p for p in folder.glob(pattern) if any(p.name.startswith(f"{s}-{version}") for s in stems))

    if found():
        return found()[0]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *flags, "--dest", str(folder), "--quiet",
           requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0 or not found():
        raise DataError(requirement, f"pip download failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return found()[0]


def fetch_ml100k(out_dir: str | Path, cache_dir: str | Path | None = None, progress=None) -> Path:
    """Put the five ML-100K files into `out_dir`. Idempotent: returns at once when they are already there.

    `progress`, if given, is called with (done, total, message) as files are written.
    """
    out_dir = Path(out_dir)
    if is_fetched(out_dir):
        return out_dir
    wheel = download_wheel(RECBOLE_WHEEL, Path(cache_dir) if cache_dir else default_cache_dir())
    with zipfile.ZipFile(wheel) as zf:
        for i, (name, digest) in enumerate(ML100K_FILES.items()):
            data = zf.read(_MEMBER_DIR + name)
            actual = hashlib.sha256(data).hexdigest()
            if actual != digest:
                raise DataError(str(wheel), f"{name} has SHA-256 {actual}, expected {digest}: corrupted download?")
            write_bytes(data, out_dir / name)
            if progress:
                progress(i + 1, len(ML100K_FILES), name)
    return out_dir
