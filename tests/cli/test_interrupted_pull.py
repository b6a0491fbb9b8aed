"""A pull interrupted halfway (the server killed) leaves no partial folder; the next completes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.harness import LOREG, LoregEnv, ThrottledProxy
from tests.factories.cli_models import Models


@pytest.mark.slow
def test_killed_server_mid_pull_leaves_nothing_and_next_pull_resumes(
    models: Models, tmp_path: Path
) -> None:
    env = LoregEnv(home=tmp_path / "home", extra={"LOREG_WORKER_POLL_SECONDS": "0.2"})
    env.start_server()
    proxy = None
    try:
        folder = tmp_path / "big-adapter"
        folder.mkdir()
        for f in models.adapter.path.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
        big = os.urandom(8 * 1024 * 1024)
        (folder / "optimizer.pt").write_bytes(big)
        env.json("base", "register", str(models.base.path), "--name", "t/base", "--no-upload")
        env.json("push", str(folder), "admin/big:v1", "--base", "t/base")

        # Download through a proxy at 2 MB/s, so the pull is still running when we kill.
        proxy = ThrottledProxy(env.port, 2 * 1024 * 1024)
        pull_env = env.env(LOREG_URL=proxy.url)
        dest = tmp_path / "out"
        cache = env.home / "cache" / "blobs" / "sha256"
        # A fresh cache so the pull really downloads (the push did not fill it).
        pull = subprocess.Popen(
            [LOREG, "pull", "admin/big:v1", "-o", str(dest), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=pull_env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            partial = [p for p in cache.rglob("*.incomplete") if p.stat().st_size > 3_000_000]
            if partial:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the pull never got halfway")
        env.kill(env.procs[0])  # SIGKILL the server mid-download
        out, err = pull.communicate(timeout=120)
        assert pull.returncode == 1, err
        assert json.loads(out)["error"]["code"] == "connection_failed"
        assert not dest.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
        kept = next(cache.rglob("*.incomplete")).stat().st_size
        assert 3_000_000 < kept < len(big)

        # The server comes back: the next pull completes, verifies, and resumes the blob.
        env.procs.clear()
        env.start_server()
        done = env.json("pull", "admin/big:v1", "-o", str(dest), env=pull_env)
        assert (dest / "optimizer.pt").read_bytes() == big
        for f in models.adapter.path.iterdir():
            assert (dest / f.name).read_bytes() == f.read_bytes()
        assert done["downloaded_bytes"] < len(big)  # the kept part was not fetched again
        assert list(cache.rglob("*.incomplete")) == []
    finally:
        if proxy is not None:
            proxy.close()
        env.stop_all()
