"""An s3:// drop box for new interactions (`incoming.remote_uri`), in front of the local inbox.

Producers upload rating files directly under the prefix (s3://bucket/prefix/NAME; the dataset's own format, as
for the local inbox). `explainrec incoming process` (and so the retrain job and its sensor) then:

1. pulls every object directly under the prefix into the local inbox (`incoming.uri`), each downloaded to a
   temporary name and renamed into place when complete;
2. processes the local inbox as usual (incoming.py: ledger, accepted/, quarantine/);
3. settles each pulled object on S3 by its local outcome: appended or seen before -> `processed/NAME`,
   quarantined -> `quarantine/NAME` beside `quarantine/NAME.reason.txt` (the same reason as the local one).
   S3 has no rename: a server-side copy, then the delete.

Why pull instead of reading in place: the ledger, the accepted files (DVC-versioned ingest inputs) and the
reasons stay with the project, so exactly-once does not depend on S3 at all; S3 is only where files arrive.
A crash between the steps loses nothing and counts nothing twice: an object not yet settled is pulled again on
the next run; its content is then in the ledger ("seen before", settled to processed/) or, if it was bad, it is
quarantined again with the same reason. A local file that already has the object's name and other content is
kept: the object arrives as `s3-NAME` instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from explainrec_core.config import StorageConfig
from explainrec_core.storage.base import ObjectInfo
from explainrec_core.storage.s3 import S3Store, parse_s3_uri

PROCESSED, QUARANTINE = "processed", "quarantine"


def open_drop_box(remote_uri: str, settings: StorageConfig) -> S3Store:
    bucket, prefix = parse_s3_uri(remote_uri)
    return S3Store(bucket, prefix, settings.endpoint_url or None, max_attempts=settings.max_attempts,
                   connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout)


def pending_objects(store: S3Store) -> list[ObjectInfo]:
    """Objects directly under the prefix (not in processed/ or quarantine/), in name order."""
    return sorted((o for o in store.objects("") if "/" not in o.key and o.key), key=lambda o: o.key)


def pull(store: S3Store, folder: Path) -> dict[str, str]:
    """Download the pending objects into the local inbox `folder`: {local file name: object key}."""
    folder.mkdir(parents=True, exist_ok=True)
    pulled = {}
    for obj in pending_objects(store):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{obj.key}.", suffix=".part", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            store.download(obj.key, tmp)
            name = obj.key
            if (folder / name).exists() and (folder / name).read_bytes() != tmp.read_bytes():
                name = f"s3-{obj.key}"  # a different local file of that name stays as it is
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
        pulled[name] = obj.key
    return pulled


def settle(store: S3Store, pulled: dict[str, str], outcomes: dict[str, tuple[str, str]]) -> None:
    """Move each pulled object by its local outcome {local name: (status, reason)}; objects the local run did not
    report on (it stopped early) stay pending for the next run."""
    for name, key in pulled.items():
        if name not in outcomes:
            continue
        status, reason = outcomes[name]
        if status == "quarantined":
            store.write_text(reason + "\n", f"{QUARANTINE}/{key}.reason.txt")
            store.move(key, f"{QUARANTINE}/{key}")
        else:
            store.move(key, f"{PROCESSED}/{key}")
