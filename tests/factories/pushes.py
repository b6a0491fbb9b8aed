"""Real PEFT adapters and their base models, pushed to a live registry over raw HTTP.

The three-call protocol of docs/design.md §5, spelled out with httpx (no client SDK), so
API tests exercise exactly the wire: ``POST /uploads``, ``PUT /blobs/{digest}`` for each
missing digest, ``POST /adapters/{ns}/{name}/versions``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.factories.tiny_models import TinyAdapter, TinyModel, make_llama, make_lora_adapter


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def folder_files(folder: Path) -> list[dict[str, Any]]:
    """``[{path, digest, size}]`` of every file under ``folder`` (sorted)."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out.append(
                {
                    "path": p.relative_to(folder).as_posix(),
                    "digest": sha256_file(p),
                    "size": p.stat().st_size,
                }
            )
    return out


def upload(client: httpx.Client, folder: Path, files: list[dict[str, Any]]) -> list[str]:
    """Upload the missing blobs of ``files``; return the digests that were missing."""
    r = client.post("/uploads", json={"digests": [f["digest"] for f in files]})
    assert r.status_code == 200, r.text
    missing = r.json()["missing"]
    for f in files:
        if f["digest"] in missing:
            data = (folder / f["path"]).read_bytes()
            r = client.put(
                f"/blobs/{f['digest']}",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert r.status_code in (200, 201), r.text
    return list(missing)


def push(client: httpx.Client, folder: Path, target: str, **body: Any) -> httpx.Response:
    """Upload what is missing and create the version; returns the create response."""
    files = folder_files(folder)
    upload(client, folder, files)
    return client.post(f"/adapters/{target}/versions", json={"files": files, **body})


def base_body(model: TinyModel, name: str) -> dict[str, Any]:
    """The ``POST /bases`` body for a tiny checkpoint, as the client builds it."""
    from loreg.formats.base import fingerprint

    manifest = fingerprint(model.path)
    return {
        "name": name,
        "fingerprint": manifest.fingerprint,
        "structure_hash": manifest.structure_hash,
        "num_parameters": manifest.num_parameters,
        "size_bytes": manifest.size_bytes,
        "tensors": {n: {"dtype": d, "shape": list(s)} for n, (d, s) in manifest.tensors.items()},
        "tensor_files": dict(manifest.files),
        "aliases": dict(manifest.aliases),
    }


def register_base(
    client: httpx.Client, model: TinyModel, name: str, *, with_files: bool = False
) -> httpx.Response:
    body = base_body(model, name)
    if with_files:
        files = folder_files(model.path)
        upload(client, model.path, files)
        body["files"] = files
    return client.post("/bases", json=body)


@dataclass
class Models:
    """Two tiny Llama bases (hidden 32 and 48) and adapters on them, built once per session."""

    base: TinyModel
    other_base: TinyModel  # another hidden size: adapters of ``base`` do not fit it
    adapter: TinyAdapter  # r=4 on q/k/v/o
    adapter_r8: TinyAdapter  # r=8 on q/v, other seed
    other_adapter: TinyAdapter  # on other_base

    def variant(self, root: Path, seed: int) -> TinyAdapter:
        """Another adapter on ``base`` (different bytes for each seed)."""
        return make_lora_adapter(self.base, root / f"variant-{seed}", r=4, seed=seed)


def build_models(root: Path) -> Models:
    base = make_llama(root / "base")
    other = make_llama(root / "other-base", hidden_size=48, intermediate_size=96)
    return Models(
        base=base,
        other_base=other,
        adapter=make_lora_adapter(base, root / "adapter", r=4),
        adapter_r8=make_lora_adapter(
            base, root / "adapter-r8", r=8, target_modules=["q_proj", "v_proj"], seed=1
        ),
        other_adapter=make_lora_adapter(other, root / "other-adapter", r=4),
    )


_DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A safetensors file of zero-filled tensors, written directly (fast even for a header
    listing hundreds of thousands of tensors, where a real library would be slow)."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = _DTYPE_BYTES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.write(bytes(offset))


def adapter_with_tensors(
    src: TinyAdapter, folder: Path, tensors: dict[str, tuple[str, list[int]]]
) -> Path:
    """``src``'s adapter_config.json beside a weights file listing ``tensors``."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_bytes((src.path / "adapter_config.json").read_bytes())
    write_safetensors(folder / "adapter_model.safetensors", tensors)
    return folder
