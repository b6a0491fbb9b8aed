"""Push and pull: the wire protocol of docs/design.md §5, seen from the client.

Push: hash every file (streamed; unchanged files come from the hash index), ask the registry
which digests it lacks, upload only those in parallel, then create the version from the
manifest. Pull: resolve the reference to a version, then build the target folder in a temp
dir beside it, each blob copied from the local cache (verified in the same read) or fetched
into it first (verified, resumable, retried), in parallel, and rename the folder into place, so
an interrupted pull never leaves a partial folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import httpx

from loreg.client._http import Http
from loreg.client.cache import CHUNK, BlobCache, HashIndex, hash_file
from loreg.client.errors import ApiError, Conflict, IntegrityError, InvalidInput, ServerError
from loreg.client.models import Version
from loreg.refs import FileEntry

DEFAULT_WORKERS = 4
UPLOAD_CHUNK = 1024 * 1024


class Bar(Protocol):
    """What the engine needs of a progress bar (a ``tqdm`` fits)."""

    def update(self, n: int) -> Any: ...

    def close(self) -> Any: ...


#: ``progress(description, total_bytes)`` opens a bar; ``None`` means no progress shown.
ProgressFactory = Callable[[str, int], Bar]


class _NoBar:
    def update(self, n: int) -> None:
        return None

    def close(self) -> None:
        return None


@contextlib.contextmanager
def _bar(progress: ProgressFactory | None, desc: str, total: int) -> Iterator[Bar]:
    bar: Bar = progress(desc, total) if progress is not None else _NoBar()
    try:
        yield bar
    finally:
        bar.close()


@dataclass
class PushResult:
    """What a push did: the version the registry answered, and what travelled."""

    version: Version
    files: list[FileEntry]
    uploaded_files: int
    uploaded_bytes: int
    total_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """``loreg push --json``: the version as the API answered it, and the transfer."""
        return {
            "version": self.version.to_dict(),
            "files": [f.to_dict() for f in self.files],
            "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes,
            "total_bytes": self.total_bytes,
        }


@dataclass
class PullResult:
    """Where a pull wrote, and how much came over the network vs from the cache;
    ``version``: the version pulled (``None`` for a job's outputs)."""

    path: Path
    files: list[FileEntry]
    downloaded_bytes: int
    cached_bytes: int
    version: Version | None = None

    def to_dict(self) -> dict[str, Any]:
        """``loreg pull --json``."""
        return {
            "path": str(self.path),
            "files": [f.to_dict() for f in self.files],
            "downloaded_bytes": self.downloaded_bytes,
            "cached_bytes": self.cached_bytes,
            "version": self.version.to_dict() if self.version is not None else {},
        }


# --- local files ---------------------------------------------------------------------------


def list_folder(folder: Path) -> list[tuple[str, Path]]:
    """Regular files under ``folder`` as (relative posix path, path), sorted, dotfiles skipped."""
    if not folder.is_dir():
        raise InvalidInput(f"{folder} is not a directory", details={"path": str(folder)})
    out: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or name.endswith(".incomplete"):
                continue
            p = Path(root) / name
            if p.is_file():
                out.append((p.relative_to(folder).as_posix(), p))
    out.sort()
    if not out:
        raise InvalidInput(f"{folder} holds no files", details={"path": str(folder)})
    return out


def hash_files(
    files: Sequence[tuple[str, Path]],
    *,
    index: HashIndex | None = None,
    progress: ProgressFactory | None = None,
    workers: int = DEFAULT_WORKERS,
) -> list[FileEntry]:
    """Hash files in parallel (hashlib releases the GIL); order follows ``files``."""
    total = sum(p.stat().st_size for _, p in files)
    with _bar(progress, "hashing", total) as bar, ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda item: hash_file(item[1], index, bar.update), files))
    if index is not None:
        index.save()
    return [FileEntry(rel, d, s) for (rel, _), (d, s) in zip(files, results, strict=True)]


def safe_relpath(path: str) -> PurePosixPath:
    """A manifest path that stays inside the target folder, or ``IntegrityError``."""
    p = PurePosixPath(path)
    bad_part = any(part in ("", ".", "..") for part in p.parts)
    if not path or p.is_absolute() or bad_part or "\\" in path:
        raise IntegrityError(f"refusing manifest path {path!r}: not a plain relative path")
    return p


# --- push ----------------------------------------------------------------------------------


def missing_digests(http: Http, digests: Sequence[str]) -> set[str]:
    body = http.json("POST", "/uploads", json={"digests": list(digests)}, idempotent=True)
    missing = body.get("missing", []) if isinstance(body, dict) else body
    return set(missing or [])


def upload_blob(http: Http, path: Path, digest: str, size: int, bar: Bar) -> None:
    """Stream one file to ``PUT /blobs/{digest}``; a retry starts the file again."""
    sent = [0]

    def body() -> Iterator[bytes]:
        if sent[0]:
            bar.update(-sent[0])
            sent[0] = 0
        with open(path, "rb") as f:
            while chunk := f.read(UPLOAD_CHUNK):
                sent[0] += len(chunk)
                bar.update(len(chunk))
                yield chunk

    http.request(
        "PUT",
        f"/blobs/{digest}",
        content=body,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        idempotent=True,
    )


def upload_missing(
    http: Http,
    entries: Sequence[FileEntry],
    paths: dict[str, Path],
    *,
    progress: ProgressFactory | None = None,
    workers: int = DEFAULT_WORKERS,
) -> tuple[int, int]:
    """Upload the blobs the registry lacks; returns (files uploaded, bytes uploaded)."""
    unique: dict[str, FileEntry] = {}
    for e in entries:
        unique.setdefault(e.digest, e)
    if not unique:
        return 0, 0
    missing = missing_digests(http, sorted(unique))
    todo = [unique[d] for d in sorted(missing) if d in unique]
    nbytes = sum(e.size for e in todo)
    if not todo:
        return 0, 0
    with _bar(progress, "uploading", nbytes) as bar, ThreadPoolExecutor(workers) as pool:
        futures = [
            pool.submit(upload_blob, http, paths[e.path], e.digest, e.size, bar) for e in todo
        ]
        for fut in futures:
            fut.result()
    return len(todo), nbytes


# --- pull ----------------------------------------------------------------------------------


@dataclass
class _Fetch:
    downloaded: int = 0
    cached: int = 0


def fetch_blob(
    http: Http,
    cache: BlobCache,
    digest: str,
    size: int,
    dest: Path,
    bar: Bar,
    stats: _Fetch | None = None,
) -> Path:
    """Write blob ``digest`` to ``dest``, verified, from the cache or downloaded into it first.

    Returns the cached blob's path. A download resumes a partial one: Range requests continue
    from the bytes already on disk (a ``200`` answer restarts the file); connection errors and
    5xx are retried with backoff, keeping what arrived.
    """
    if _copy_cached(cache, digest, size, dest, bar, stats):
        return cache.path(digest)
    partial = cache.partial_path(digest)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "ab+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # another process pulling the same blob waits
        try:
            if _copy_cached(cache, digest, size, dest, bar, stats):
                return cache.path(digest)
            reported = [0]
            overlong = [False]

            def attempt() -> str:
                f.seek(0, os.SEEK_END)
                have = f.tell()
                if have > size:
                    f.truncate(0)
                    have = 0
                h = hashlib.sha256()
                if have:
                    f.seek(0)
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                bar.update(have - reported[0])
                reported[0] = have
                if have == size:
                    return "sha256:" + h.hexdigest()
                headers = {"Range": f"bytes={have}-"} if have else None
                with http.stream_get(f"/blobs/{digest}", headers=headers) as resp:
                    if have and resp.status_code != 206:
                        f.truncate(0)  # no range support: start again
                        h = hashlib.sha256()
                        bar.update(-reported[0])
                        reported[0] = 0
                    elif have and not _range_starts_at(resp, have):
                        f.truncate(0)
                        raise ServerError("registry answered a different byte range")
                    f.seek(0, os.SEEK_END)
                    room = size - f.tell()
                    for chunk in resp.iter_bytes():
                        # Never past the declared size: a server that keeps sending gets no
                        # more disk (or time) than the blob is worth; the digest decides.
                        take = chunk[:room]
                        f.write(take)
                        h.update(take)
                        room -= len(take)
                        bar.update(len(take))
                        reported[0] += len(take)
                        if stats is not None:
                            stats.downloaded += len(take)
                        if len(take) < len(chunk):
                            overlong[0] = True
                            break
                    f.flush()
                if f.tell() != size:
                    raise ServerError(
                        f"blob {digest} ended after {f.tell()} of {size} bytes", code="short_read"
                    )
                return "sha256:" + h.hexdigest()

            try:
                computed = http.retrying(attempt)
            finally:
                f.flush()
            if computed != digest:
                f.truncate(0)
                _discard_partial(partial)
                more = (
                    f" (the registry sent more than the {size} bytes the manifest declares)"
                    if overlong[0]
                    else ""
                )
                raise IntegrityError(
                    f"blob {digest} arrived with digest {computed}{more}; discarded. "
                    "Check that LOREG_URL points at the registry you trust, then pull again",
                    details={"expected": digest, "actual": computed, "size": size},
                )
            os.fsync(f.fileno())
            blob = cache.commit_partial(digest, computed)
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    shutil.copyfile(blob, dest)
    return blob


def _discard_partial(partial: Path) -> None:
    """Drop a partial download whose bytes failed verification (nothing of it is usable)."""
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()


def _copy_cached(
    cache: BlobCache, digest: str, size: int, dest: Path, bar: Bar, stats: _Fetch | None
) -> bool:
    """A cache hit: the blob copied to ``dest`` intact (a corrupt one is dropped instead)."""
    if not cache.copy_verified(digest, size, dest):
        return False
    bar.update(size)
    if stats is not None:
        stats.cached += size
    return True


def _range_starts_at(resp: httpx.Response, start: int) -> bool:
    cr = resp.headers.get("content-range", "")
    # "bytes 100-199/200"
    try:
        unit, _, rest = cr.partition(" ")
        return unit == "bytes" and int(rest.split("-", 1)[0]) == start
    except ValueError:
        return False


def materialize(
    http: Http,
    cache: BlobCache,
    files: Sequence[FileEntry],
    dest: Path,
    *,
    force: bool = False,
    progress: ProgressFactory | None = None,
    workers: int = DEFAULT_WORKERS,
    version: Version | None = None,
) -> PullResult:
    """Fetch ``files`` into the cache, then write ``dest`` atomically from the cache."""
    dest = dest.absolute()
    if dest.exists() and not dest.is_dir():
        raise Conflict(f"{dest} exists and is not a directory", details={"path": str(dest)})
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise Conflict(
            f"{dest} already exists and is not empty (use --force to replace it)",
            details={"path": str(dest)},
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(dest)
    stats = _Fetch()
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.loreg-{os.getpid()}-", dir=dest.parent))
    try:
        targets = [tmp.joinpath(*safe_relpath(e.path).parts) for e in files]
        first: dict[str, int] = {}  # digest -> index of the first file with it
        for i, (e, target) in enumerate(zip(files, targets, strict=True)):
            first.setdefault(e.digest, i)
            target.parent.mkdir(parents=True, exist_ok=True)
        total = sum(files[i].size for i in first.values())
        with _bar(progress, "downloading", total) as bar, ThreadPoolExecutor(workers) as pool:
            futures = {
                d: pool.submit(fetch_blob, http, cache, d, files[i].size, targets[i], bar, stats)
                for d, i in first.items()
            }
            blobs = {d: fut.result() for d, fut in futures.items()}
        for i, (e, target) in enumerate(zip(files, targets, strict=True)):
            if first[e.digest] != i:  # the same bytes again under another path
                shutil.copyfile(blobs[e.digest], target)
            if target.stat().st_size != e.size:
                raise IntegrityError(f"{e.path}: size changed while copying from the cache")
        tmp.chmod(0o755)
        _swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PullResult(dest, list(files), stats.downloaded, stats.cached, version)


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``; an existing ``dest`` is moved aside first, then removed."""
    if dest.is_dir():
        if not any(dest.iterdir()):
            dest.rmdir()
        else:
            old = dest.with_name(f".{dest.name}.loreg-old-{os.getpid()}")
            os.replace(dest, old)
            try:
                os.replace(tmp, dest)
            except BaseException:
                os.replace(old, dest)
                raise
            shutil.rmtree(old, ignore_errors=True)
            return
    os.replace(tmp, dest)


def _clean_stale_temps(dest: Path) -> None:
    """Remove temp folders of earlier pulls of ``dest`` whose process is gone."""
    prefix = f".{dest.name}.loreg-"
    with contextlib.suppress(OSError):
        for p in dest.parent.iterdir():
            if not p.name.startswith(prefix):
                continue
            rest = p.name[len(prefix) :]
            pid_text = rest.removeprefix("old-").split("-", 1)[0]
            if pid_text.isdigit() and not _alive(int(pid_text)):
                shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = [
    "ApiError",
    "Bar",
    "FileEntry",
    "ProgressFactory",
    "PullResult",
    "PushResult",
    "fetch_blob",
    "hash_files",
    "list_folder",
    "materialize",
    "upload_missing",
]
