"""Base-model registration, client side: manifest + fingerprint computed here, not uploaded.

The fingerprint (docs/design.md §3) is computed locally by ``loreg.formats`` so the
registry can record a base without holding its weights (``--no-upload``); with upload, the
checkpoint's files go up as blobs so workers can merge into it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loreg.client.cache import HashIndex
from loreg.client.transfer import (
    DEFAULT_WORKERS,
    ProgressFactory,
    _bar,
    hash_files,
    list_folder,
)
from loreg.formats.types import BaseManifest
from loreg.refs import FileEntry


def manifest_body(manifest: BaseManifest) -> dict[str, Any]:
    """A ``BaseManifest`` as JSON: tensors as {name: {dtype, shape}}, plus hashes and sizes."""
    return {
        "fingerprint": manifest.fingerprint,
        "structure_hash": manifest.structure_hash,
        "num_parameters": manifest.num_parameters,
        "size_bytes": manifest.size_bytes,
        "tensors": {
            name: {"dtype": dtype, "shape": list(shape)}
            for name, (dtype, shape) in manifest.tensors.items()
        },
        "tensor_files": dict(manifest.files),
        "aliases": dict(manifest.aliases),
    }


def build_base_registration(
    folder: Path,
    name: str,
    *,
    progress: ProgressFactory | None = None,
    index: HashIndex | None = None,
    workers: int = DEFAULT_WORKERS,
) -> tuple[dict[str, Any], list[FileEntry], dict[str, Path]]:
    """(request body, file entries, path by relative name) for ``POST /bases``."""
    from loreg.formats.base import fingerprint, folder_config

    folder = Path(folder)
    files = list_folder(folder)
    total = sum(p.stat().st_size for rel, p in files if rel.endswith(".safetensors"))
    with _bar(progress, "fingerprint", total) as bar:
        last = [0]

        def report(done: int, _total: int) -> None:
            bar.update(done - last[0])
            last[0] = done

        manifest = fingerprint(folder, report, workers=workers)
    entries = hash_files(files, index=index, progress=progress, workers=workers)
    body: dict[str, Any] = {"name": name, **manifest_body(manifest)}
    config = folder_config(folder)
    if config is not None:
        body["config"] = config  # its model_type picks the checkpoint conversion rules
    return body, entries, dict(files)
