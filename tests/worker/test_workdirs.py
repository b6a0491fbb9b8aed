"""Attempt folders: locked while their process lives, swept once it is dead (a real
``kill -9`` of a process holding one), never while it lives; leftovers without a lock only
after the grace period."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from loreg.worker.workdirs import LOCK_NAME, attempt_folder, sweep

HOLDER = """
import sys, time
from pathlib import Path
from loreg.worker.workdirs import attempt_folder
with attempt_folder(Path(sys.argv[1]), "job1", 2) as folder:
    (folder / "out.incomplete").mkdir()
    (folder / "out.incomplete" / "model-00001.safetensors").write_bytes(b"x" * 1000)
    print(folder, flush=True)
    time.sleep(600)
"""


def _hold_in_child(root: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, "the child did not make its folder"
    return proc, Path(line)


def test_folder_is_locked_while_in_use_and_gone_after(tmp_path: Path) -> None:
    root = tmp_path / "work"
    with attempt_folder(root, "abc", 1) as folder:
        assert folder.parent == root and folder.name.startswith("abc-1-")
        assert (folder / LOCK_NAME).is_file()
        (folder / "inputs").mkdir()
        assert sweep(root) == []  # a live attempt's folder is never touched
        assert folder.is_dir()
    assert list(root.iterdir()) == []


def test_dead_process_folder_is_reported_then_removed(tmp_path: Path) -> None:
    root = tmp_path / "work"
    proc, folder = _hold_in_child(root)
    try:
        assert sweep(root) == []  # alive: kept
        assert folder.is_dir()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    listed = sweep(root, dry_run=True)
    assert [(d.path, d.job_id, d.attempt) for d in listed] == [(str(folder), "job1", 2)]
    assert listed[0].size >= 1000
    assert (folder / "out.incomplete").is_dir()  # a dry run changes nothing
    assert [d.path for d in sweep(root)] == [str(folder)]
    assert not folder.exists()


def test_folders_without_a_lock_wait_for_the_grace_period(tmp_path: Path) -> None:
    root = tmp_path / "work"
    old = root / "olderjob-1"
    (old / "out.incomplete").mkdir(parents=True)
    staging = root / ".newjob-1-abcd.new"
    staging.mkdir()
    assert sweep(root) == []  # both too recent to judge
    past = time.time() - 3600
    for path in (old, old / "out.incomplete", staging):
        os.utime(path, (past, past))
    removed = {Path(d.path).name for d in sweep(root, grace_seconds=600)}
    assert removed == {"olderjob-1", ".newjob-1-abcd.new"}
    assert list(root.iterdir()) == []


def test_missing_root_is_empty(tmp_path: Path) -> None:
    assert sweep(tmp_path / "nothing") == []
