"""Work folders of job attempts: ``$LOREG_HOME/worker/work/<job>-<attempt>-<tag>/``.

An attempt downloads its inputs and writes its outputs (``out.incomplete/`` while a merge
runs) into its own folder, and removes it when it ends. A worker that is killed (``kill -9``,
out of memory, power loss) cannot, so every folder carries a lock file that its worker holds
(``flock``) from the moment the folder gets its name until it is gone: the kernel releases
the lock when the process dies, whatever killed it. A folder whose lock anyone can take is
therefore dead, and ``sweep`` removes it; one whose lock is held belongs to a live attempt
and is never touched, on whichever worker of that home it runs.

The folder is prepared under a hidden name (``.<name>.new``), locked, then renamed into place,
so a visible folder is always locked while its owner lives. Hidden leftovers (a crash in
between) and folders without a lock file are removed once older than ``grace``.

Every worker sweeps its home at start-up and every few minutes; ``loreg gc`` reports (with
``--dry-run``) or removes the dead folders of the home it runs on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = ".lock"
#: Age after which an unlockable-by-design leftover (no lock file, or a hidden folder that
#: never got its name) is taken for dead.
DEFAULT_GRACE_SECONDS = 300.0


@dataclass(frozen=True)
class DeadFolder:
    """A work folder no live attempt holds."""

    path: str
    job_id: str | None
    attempt: int | None
    size: int
    modified: float  # Unix time of the newest entry

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "job_id": self.job_id,
            "attempt": self.attempt,
            "size": self.size,
            "modified": self.modified,
        }


@contextlib.contextmanager
def attempt_folder(root: Path, job_id: str, attempt: int) -> Iterator[Path]:
    """A fresh, locked folder for one attempt; removed (then unlocked) when the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"{job_id}-{attempt}-{uuid.uuid4().hex[:8]}"
    staging = root / f".{name}.new"
    staging.mkdir()
    lock = open(staging / LOCK_NAME, "wb")  # noqa: SIM115 - held for the folder's lifetime
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # a sweep may hold it for a moment
        path = root / name
        os.rename(staging, path)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        lock.close()  # releases the lock, after the folder is gone


def _parse(name: str) -> tuple[str | None, int | None]:
    parts = name.lstrip(".").removesuffix(".new").split("-")
    if len(parts) >= 2 and parts[1].isdigit():
        return parts[0], int(parts[1])
    return None, None


def _usage(path: Path) -> tuple[int, float]:
    """Bytes under ``path`` and the newest modification time (0 if it vanished)."""
    size, newest = 0, 0.0
    with contextlib.suppress(OSError):
        newest = path.stat().st_mtime
        for p in path.rglob("*"):
            with contextlib.suppress(OSError):
                st = p.lstat()
                newest = max(newest, st.st_mtime)
                if p.is_file():
                    size += st.st_size
    return size, newest


@contextlib.contextmanager
def _try_lock(lock_path: Path) -> Iterator[bool | None]:
    """Inside: False if a live process holds the lock, True if we hold it now (nobody else
    can take it while the block runs), None if there is no lock file."""
    try:
        f = open(lock_path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        yield None
        return
    except OSError:
        yield False  # cannot tell: leave it alone
        return
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def sweep(
    root: Path, *, dry_run: bool = False, grace_seconds: float = DEFAULT_GRACE_SECONDS
) -> list[DeadFolder]:
    """Find (and unless ``dry_run`` remove) the dead attempt folders under ``root``."""
    if not root.is_dir():
        return []
    dead: list[DeadFolder] = []
    now = time.time()
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.is_symlink():
            continue
        with _try_lock(child / LOCK_NAME) as free:
            if free is False:
                continue  # a live attempt's
            size, modified = _usage(child)
            if (free is None or child.name.startswith(".")) and now - modified < grace_seconds:
                continue  # being prepared, or of unknown owner and recent: not yet
            job_id, attempt = _parse(child.name)
            dead.append(DeadFolder(str(child), job_id, attempt, size, modified))
            if not dry_run:
                shutil.rmtree(child, ignore_errors=True)
    return dead
