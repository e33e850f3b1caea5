"""`explainrec storage ...`: publish pipeline outputs to the configured store, list them, fetch them back.

    explainrec storage push [NAMES...]            rec_adapter + the evaluation report by default
    explainrec storage pull NAME --to PATH        a folder (verified against its manifest) or a file
    explainrec storage ls                         what the store holds
    explainrec storage dvc-remote                 point DVC's default remote at the same bucket (s3 backend)

The store is `storage` in params.yaml (local folder or S3; environment overrides in StorageConfig). Credentials
come only from the AWS credential chain.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from explainrec_core import pipeline
from explainrec_core.config import DEFAULT_PARAMS, Config, load_config
from explainrec_core.errors import ConfigError, ExplainRecError, StorageError
from explainrec_core.storage import DEFAULT_PUBLISH, effective_settings, open_store, publish_artifacts

storage_app = typer.Typer(help="Publish artefacts to the configured store (local folder or S3) and fetch them.",
                          no_args_is_help=True)
console = Console(stderr=True, soft_wrap=True)
ParamsOption = Annotated[Path, typer.Option("--params", help="Settings file.")]
EXIT_INPUT = 2  # the exit code of explainrec_core.cli for unusable input or settings (not imported: cli imports us)
DVC_REMOTE_DIR = "dvc"
"""DVC's cache goes under s3://BUCKET/PREFIX/dvc, next to the published artefacts."""


def _fail(exc: ExplainRecError) -> typer.Exit:
    console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    return typer.Exit(EXIT_INPUT)


def _config(params: Path) -> Config:
    return load_config(params) if params.exists() else Config()


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n} B"


@storage_app.command("push")
def push(
    names: Annotated[list[str] | None, typer.Argument(help=f"Pipeline outputs (default: {' '.join(DEFAULT_PUBLISH)}).",
                                                      show_default=False)] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Publish pipeline outputs: folders become versioned artefacts (manifest written last), files objects."""
    try:
        cfg = _config(params)
        published = publish_artifacts(pipeline.outputs(cfg, Path(".")), open_store(cfg, Path(".")),
                                      names or DEFAULT_PUBLISH)
    except ExplainRecError as exc:
        raise _fail(exc) from None
    for entry in published.values():
        detail = f"version {entry.version}, {entry.files} files" if entry.kind == "dir" else "file"
        console.print(f"{entry.name}: {entry.uri} ({detail}, {_size(entry.bytes)})", highlight=False)


@storage_app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="Artefact name, as `explainrec storage ls` shows it.")],
    to: Annotated[Path, typer.Option("--to", help="Local folder (or file) to write; replaced only when verified.")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Fetch an artefact: into a temporary path first, checked against its sha256, then renamed into place."""
    try:
        store = open_store(_config(params), Path("."))
        entry = store.stat(name)
        if entry is None:
            raise StorageError(f"{store.uri(name)} does not exist (see `explainrec storage ls`)")
        (store.get_dir if entry.kind == "dir" else store.get_file)(name, to)
    except ExplainRecError as exc:
        raise _fail(exc) from None
    console.print(f"{name}: {entry.uri} -> {to} ({_size(entry.bytes)})", highlight=False)


@storage_app.command("ls")
def ls(
    prefix: Annotated[str, typer.Argument(help="Only names starting with this.")] = "",
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """List the store's artefacts (unfinished uploads are not artefacts and never show)."""
    try:
        store = open_store(_config(params), Path("."))
        entries = store.list(prefix)
    except ExplainRecError as exc:
        raise _fail(exc) from None
    table = Table("name", "kind", "version / sha256", "files", "size", title=f"store: {store.uri()}")
    for e in entries:
        table.add_row(e.name, e.kind, e.version or e.sha256[:16], str(e.files), _size(e.bytes))
    Console(width=200).print(table)


@storage_app.command("dvc-remote")
def dvc_remote(
    name: Annotated[str, typer.Option(help="DVC remote name.")] = "storage",
    local: Annotated[bool, typer.Option("--local", help="Write to .dvc/config.local (git-ignored) instead.")] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Make DVC's default remote s3://BUCKET/PREFIX/dvc at the configured endpoint; credentials stay in the AWS
    chain (DVC reads it like boto3 does), never in .dvc/config."""
    try:
        s = effective_settings(_config(params).storage)
        if not s.bucket:
            raise ConfigError("storage:bucket is empty: set it in params.yaml or EXPLAINREC_S3_BUCKET")
    except ExplainRecError as exc:
        raise _fail(exc) from None
    url = "/".join(p for p in (f"s3://{s.bucket}", s.prefix.strip("/"), DVC_REMOTE_DIR) if p)
    scope = ["--local"] if local else []
    commands = [["remote", "add", *scope, "--default", "--force", name, url]]
    if s.endpoint_url:
        commands.append(["remote", "modify", *scope, name, "endpointurl", s.endpoint_url])
    for args in commands:
        proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
        if proc.returncode:
            raise _fail(StorageError(f"`dvc {' '.join(args)}` failed: {(proc.stderr or proc.stdout).strip()[:600]}"))
    console.print(f"DVC remote '{name}' (default): {url}" + (f" at {s.endpoint_url}" if s.endpoint_url else ""),
                  highlight=False)
