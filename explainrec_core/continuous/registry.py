"""The model registry: every champion and challenger, what it was trained on, and why it was (not) promoted.

`models/registry.json` is one JSON document, rewritten atomically (io.write_json) after each change:

    {"champion": "m0002", "models": [record, ...], "events": [{"at", "action", "model", "reason"}, ...]}

Each record keeps its own copy of the adapter folder (LoRA + fusion) *and of the item_features table it was
trained with* under `models/registry/<id>/`: a fusion only runs on the features it was trained on, and a retrain
rebuilds the features, so an older champion could not be served (or rolled back to) without its copy.

Serving reads `models/explain_item_token_adapter` (paths.CHAMPION_ADAPTER). `promote` and `rollback` swap the
chosen record's copy into that folder atomically (the previous folder stays intact until the new one is complete),
features included, so `explain`, `recommend` and `published_artifacts` use the registry's champion.

No well-kept registry fits offline without a server (MLflow's needs a tracking store and brings a web stack we do
not otherwise use); a JSON file in the repository's model folder, versioned with the adapters, is enough here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from explainrec_core import paths
from explainrec_core.errors import ExplainRecError
from explainrec_core.io import write_json

REGISTRY, STORE, FEATURES_COPY = paths.REGISTRY, paths.REGISTRY_STORE, paths.ADAPTER_FEATURES


class RegistryError(ExplainRecError):
    """The registry file is unreadable, or names a model that is not in it."""


@dataclass
class ModelRecord:
    id: str
    created: str
    role: str
    """champion (served now) | challenger (evaluated, not promoted) | retired (a former champion)."""
    adapter_sha256: str
    """Content hash of the adapter's weight files (LoRA + fusion)."""
    data_sha256: str
    """Content hash of the interactions table it was trained on."""
    accepted_files: list[str]
    """The accepted incoming files (accepted/<sha12>.parquet) its data contained."""
    git_commit: str | None
    params_sha256: str
    parent: str | None = None
    """The champion a challenger was warm-started from."""
    metrics: dict = field(default_factory=dict)
    decision: str = ""
    reason: str = ""

    def folder(self, root: Path) -> Path:
        return Path(root) / STORE / self.id


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def adapter_digest(folder: Path) -> str:
    """Hash of the weight files of an adapter folder (safetensors), in name order."""
    h = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.safetensors")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def copy_folder(source: Path, target: Path, features: Path | None = None) -> None:
    """Copy `source` (and `features` as FEATURES_COPY) into `target`, swapped in atomically: the previous `target`
    stays intact until the copy is complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        shutil.copytree(source, staging)
        if features is not None:
            shutil.copy2(features, staging / FEATURES_COPY)
        old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class Registry:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.path = self.root / REGISTRY
        self.champion: str | None = None
        self.models: list[ModelRecord] = []
        self.events: list[dict] = []
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
                self.champion = doc["champion"]
                self.models = [ModelRecord(**m) for m in doc["models"]]
                self.events = list(doc["events"])
            except (ValueError, KeyError, TypeError) as exc:
                raise RegistryError(f"{self.path}: unreadable registry ({type(exc).__name__}: {exc}); it was not "
                                    "changed: restore it from git/DVC or move it away to start a new one") from None

    def get(self, model_id: str) -> ModelRecord:
        for record in self.models:
            if record.id == model_id:
                return record
        raise RegistryError(f"{self.path}: no model {model_id!r} (known: {[m.id for m in self.models]})")

    def current(self) -> ModelRecord | None:
        return self.get(self.champion) if self.champion else None

    def register(self, adapter: Path, features: Path, *, role: str, data_sha256: str, accepted_files: list[str],
                 git_commit: str | None, params_sha256: str, parent: str | None = None, metrics: dict | None = None,
                 decision: str = "", reason: str = "") -> ModelRecord:
        """Copy `adapter` and `features` into the store and add a record (saved)."""
        if not adapter.is_dir():
            raise RegistryError(f"{adapter}: no adapter folder to register")
        record = ModelRecord(id=f"m{len(self.models) + 1:04d}", created=now(), role=role,
                             adapter_sha256=adapter_digest(adapter), data_sha256=data_sha256,
                             accepted_files=sorted(accepted_files), git_commit=git_commit,
                             params_sha256=params_sha256, parent=parent, metrics=metrics or {}, decision=decision,
                             reason=reason)
        copy_folder(adapter, record.folder(self.root), features)
        self.models.append(record)
        if role == "champion":
            self._crown(record, "registered as champion", reason)
        else:
            self.events.append({"at": record.created, "action": "registered", "model": record.id, "reason": reason})
        self.save()
        return record

    def promote(self, model_id: str, serve_dir: Path, reason: str) -> ModelRecord:
        """Make `model_id` the champion and serve it (its adapter and features swapped into `serve_dir`)."""
        record = self.get(model_id)
        copy_folder(record.folder(self.root), serve_dir)
        self._crown(record, "promoted", reason)
        self.save()
        return record

    def rollback(self, serve_dir: Path, to: str | None = None) -> ModelRecord:
        """Serve the previous champion again (or `to`, any registered model)."""
        if to is None:
            former = [e["model"] for e in self.events if e["action"] in ("registered as champion", "promoted",
                                                                         "rolled back to")]
            earlier = [m for m in reversed(former) if m != self.champion]
            if not earlier:
                raise RegistryError(f"{self.path}: no earlier champion to roll back to")
            to = earlier[0]
        record = self.get(to)
        copy_folder(record.folder(self.root), serve_dir)
        self._crown(record, "rolled back to", f"rollback from {self.champion}")
        self.save()
        return record

    def _crown(self, record: ModelRecord, action: str, reason: str) -> None:
        for m in self.models:
            if m.role == "champion" and m.id != record.id:
                m.role = "retired"
        record.role = "champion"
        self.champion = record.id
        self.events.append({"at": now(), "action": action, "model": record.id, "reason": reason})

    def save(self) -> None:
        write_json({"champion": self.champion, "models": [asdict(m) for m in self.models], "events": self.events},
                   self.path)
