"""Base-model checkpoints: the manifest from headers, the structure hash and the fingerprint.

Canonical encoding (version 1; never change it, stored fingerprints depend on it)
--------------------------------------------------------------------------------
A record per tensor, sorted by tensor name (Python ``str`` order = Unicode code point order =
UTF-8 byte order), each the UTF-8 bytes of the compact JSON array followed by ``\\n``::

    structure hash record:  ["model.layers.0.mlp.up_proj.weight","BF16",[11008,4096]]\\n
    fingerprint record:     ["model.layers.0.mlp.up_proj.weight","BF16",[11008,4096],"<hex>"]\\n

(``json.dumps(record, separators=(",", ":"), ensure_ascii=False)``; dtype is the safetensors
dtype string; shape a list of integers, ``[]`` for a scalar; ``<hex>`` the lower-case sha256
of the tensor's raw bytes as stored, little-endian as safetensors stores them.) The structure
hash is ``"sha256:" + sha256(structure records)``, the fingerprint
``"sha256:" + sha256(fingerprint records)``. Neither depends on the shard layout, the order
of tensors in files, nor on ``__metadata__``; both change if any name, dtype, shape (and, for
the fingerprint, any byte) changes. ``FingerprintBuilder`` exposes the pieces so the merge
engine can verify the fingerprint in the same pass that reads the tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from loreg.digests import PREFIX as DIGEST_PREFIX
from loreg.digests import digest_hex
from loreg.errors import InvalidInput
from loreg.formats.safetensors import read_header
from loreg.formats.types import BaseManifest, DType, SafetensorsHeader, TensorInfo

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
READ_CHUNK = 1024 * 1024  # per hashing thread: stays in L2 cache between the copy and the hash

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

# Input-embedding tensor names, by architecture, that an omitted tied lm_head points to.
_EMBEDDING_SUFFIXES = (
    "embed_tokens.weight",
    "wte.weight",
    "shared.weight",
    "word_embeddings.weight",
    "embed_in.weight",
    "tok_embeddings.weight",
)


class BaseFormatError(InvalidInput):
    """A base checkpoint folder is not readable as safetensors (single file or shards)."""

    code: ClassVar[str] = "invalid_base_model"


def _record(name: str, dtype: DType, shape: Iterable[int], *extra: str) -> bytes:
    doc: list[Any] = [name, dtype, [int(d) for d in shape], *extra]
    return (json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")


class FingerprintBuilder:
    """Accumulates (name, dtype, shape, tensor sha256) in any order; sorts when finished."""

    def __init__(self) -> None:
        self._records: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def add(self, name: str, dtype: DType, shape: Iterable[int], tensor_sha256_hex: str) -> None:
        hex_ = digest_hex(DIGEST_PREFIX + tensor_sha256_hex.lower())
        rec = _record(name, dtype, shape, hex_)
        with self._lock:
            if name in self._records:
                raise ValueError(f"tensor {name!r} added twice")
            self._records[name] = rec

    def __len__(self) -> int:
        return len(self._records)

    def digest(self) -> bytes:
        h = hashlib.sha256()
        for name in sorted(self._records):
            h.update(self._records[name])
        return h.digest()

    def hexdigest(self) -> str:
        return self.digest().hex()

    def fingerprint(self) -> str:
        """``"sha256:<64 hex>"``, the form stored and compared everywhere."""
        return DIGEST_PREFIX + self.hexdigest()


def structure_hash(tensors: Mapping[str, tuple[DType, tuple[int, ...]]]) -> str:
    """``"sha256:<hex>"`` over the sorted (name, dtype, shape) records."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        dtype, shape = tensors[name]
        h.update(_record(name, dtype, shape))
    return DIGEST_PREFIX + h.hexdigest()


def read_headers(folder: Path) -> dict[str, SafetensorsHeader]:
    """Relative file name -> validated header, for the checkpoint's safetensors files.

    The one rule for which files make up a base: the fingerprint and the merge both use it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BaseFormatError(f"{folder} is not a folder")
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BaseFormatError(f"{INDEX_FILE} is not valid JSON: {e}") from None
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
        ):
            raise BaseFormatError(f"{INDEX_FILE} has no weight_map of tensor -> file")
        files = sorted(set(weight_map.values()))
        for f in files:
            if Path(f).is_absolute() or ".." in Path(f).parts:
                raise BaseFormatError(f"{INDEX_FILE} names a file outside the folder: {f!r}")
        headers: dict[str, SafetensorsHeader] = {}
        for f in files:
            p = folder / f
            if not p.is_file():
                raise BaseFormatError(f"{INDEX_FILE} names {f}, which is missing")
            with open(p, "rb") as fh:
                headers[f] = read_header(fh, name=f)
        for tname, f in weight_map.items():
            if tname not in headers[f].tensors:
                raise BaseFormatError(
                    f"{INDEX_FILE} maps {tname!r} to {f}, which does not contain it",
                    details={"file": f, "tensor": tname},
                )
        return headers
    single = folder / SINGLE_FILE
    if single.is_file():
        with open(single, "rb") as fh:
            return {SINGLE_FILE: read_header(fh, name=SINGLE_FILE)}
    others = sorted(p.name for p in folder.glob("*.safetensors"))
    if len(others) == 1:
        with open(folder / others[0], "rb") as fh:
            return {others[0]: read_header(fh, name=others[0])}
    if others:
        raise BaseFormatError(
            f"{folder}: several safetensors files ({', '.join(others[:4])}...) but no {INDEX_FILE}"
        )
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise BaseFormatError(
            f"{folder}: only pickled weights (.bin/.pt); loreg reads safetensors only. Convert"
            " with transformers: AutoModel...from_pretrained(dir).save_pretrained(out)"
        )
    raise BaseFormatError(f"{folder}: no {SINGLE_FILE} and no {INDEX_FILE}")


def tied_aliases(config: Mapping[str, Any] | None, tensors: Mapping[str, Any]) -> dict[str, str]:
    """``lm_head.weight`` -> the input embedding, when ``config`` (config.json) ties them and
    the checkpoint omits lm_head. The registry applies the same rule to a stored config."""
    if not isinstance(config, Mapping) or "lm_head.weight" in tensors:
        return {}
    text_cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    tie = config.get("tie_word_embeddings", (text_cfg or {}).get("tie_word_embeddings", True))
    if not tie:
        return {}
    for suffix in _EMBEDDING_SUFFIXES:
        matches = sorted(n for n in tensors if n == suffix or n.endswith("." + suffix))
        if matches:
            return {"lm_head.weight": min(matches, key=len)}
    return {}


def folder_config(folder: Path) -> dict[str, Any] | None:
    """The folder's config.json as a dict (none, or unreadable: None)."""
    cfg_path = Path(folder) / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, OSError):
        return None
    return cfg if isinstance(cfg, dict) else None


def model_type_of(config: Mapping[str, Any] | None) -> str | None:
    """config.json's ``model_type`` (a string), if any."""
    value = config.get("model_type") if isinstance(config, Mapping) else None
    return value if isinstance(value, str) and value else None


def _manifest(
    folder: Path, headers: dict[str, SafetensorsHeader]
) -> tuple[dict[str, tuple[DType, tuple[int, ...]]], dict[str, str], dict[str, TensorInfo]]:
    tensors: dict[str, tuple[DType, tuple[int, ...]]] = {}
    files: dict[str, str] = {}
    infos: dict[str, TensorInfo] = {}
    for f, header in sorted(headers.items()):
        for tname, info in header.tensors.items():
            if tname in files:
                raise BaseFormatError(
                    f"tensor {tname!r} appears in both {files[tname]} and {f}",
                    details={"file": f, "tensor": tname},
                )
            tensors[tname] = (info.dtype, info.shape)
            files[tname] = f
            infos[tname] = info
    return tensors, files, infos


def read_manifest(folder: Path) -> BaseManifest:
    """The manifest (tensor name -> dtype, shape) and structure hash, from headers alone."""
    return _build_manifest(folder, read_headers(folder))[0]


def manifest_from_headers(folder: Path, headers: dict[str, SafetensorsHeader]) -> BaseManifest:
    """``read_manifest`` for headers already read (``read_headers(folder)``)."""
    return _build_manifest(folder, headers)[0]


def _build_manifest(
    folder: Path, headers: dict[str, SafetensorsHeader]
) -> tuple[BaseManifest, dict[str, TensorInfo]]:
    tensors, files, infos = _manifest(folder, headers)
    config = folder_config(folder)
    manifest = BaseManifest(
        tensors=dict(sorted(tensors.items())),
        structure_hash=structure_hash(tensors),
        fingerprint=None,
        num_parameters=sum(i.numel for i in infos.values()),
        size_bytes=sum(h.file_size for h in headers.values()),
        files=dict(sorted(files.items())),
        aliases=tied_aliases(config, tensors),
        model_type=model_type_of(config),
    )
    return manifest, infos


def hash_tensor_bytes(fd: int, start: int, end: int, buf: bytearray) -> str:
    """sha256 hex of bytes [start, end) of an open file, read with ``os.preadv`` into ``buf``."""
    h = hashlib.sha256()
    view = memoryview(buf)
    pos = start
    while pos < end:
        want = min(len(buf), end - pos)
        n = os.preadv(fd, [view[:want]], pos)
        if n <= 0:
            raise BaseFormatError(f"file ended at byte {pos}, expected data up to {end}")
        h.update(view[:n])  # releases the GIL for large buffers: threads hash in parallel
        pos += n
    return h.hexdigest()


def fingerprint(
    folder: Path,
    progress: Progress | None = None,
    *,
    workers: int | None = None,
    chunk_size: int = READ_CHUNK,
) -> BaseManifest:
    """The manifest with ``fingerprint`` filled: every tensor's bytes hashed, streaming.

    Memory is bounded by ``workers x chunk_size`` whatever the checkpoint size. Tensors are
    hashed in parallel threads (hashlib releases the GIL), each thread reading its tensor's
    range with ``pread`` into its own buffer.
    """
    folder = Path(folder)
    headers = read_headers(folder)
    manifest, infos = _build_manifest(folder, headers)
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    total = sum(i.nbytes for i in infos.values())
    done = 0
    done_lock = threading.Lock()
    builder = FingerprintBuilder()
    fds: dict[str, int] = {}
    for f in headers:
        fds[f] = os.open(folder / f, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    local = threading.local()

    def work(tname: str) -> None:
        nonlocal done
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = bytearray(chunk_size)
        info = infos[tname]
        hex_ = hash_tensor_bytes(fds[manifest.files[tname]], info.start, info.end, buf)
        builder.add(tname, info.dtype, info.shape, hex_)
        if progress is not None:
            with done_lock:
                done += info.nbytes
                progress(done, total)

    # Largest tensors first so the threads finish together; file order otherwise.
    order = sorted(infos, key=lambda n: (-infos[n].nbytes, manifest.files[n], infos[n].start))
    try:
        if workers == 1:
            for tname in order:
                work(tname)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fp") as pool:
                for fut in [pool.submit(work, t) for t in order]:
                    fut.result()
    finally:
        for fd in fds.values():
            os.close(fd)
    return BaseManifest(
        tensors=manifest.tensors,
        structure_hash=manifest.structure_hash,
        fingerprint=builder.fingerprint(),
        num_parameters=manifest.num_parameters,
        size_bytes=manifest.size_bytes,
        files=manifest.files,
        aliases=manifest.aliases,
        model_type=manifest.model_type,
    )
