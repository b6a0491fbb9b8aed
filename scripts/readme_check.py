"""Run README.md's commands as written, in a new clone with a new virtual environment.

    python3 scripts/readme_check.py            # what CI runs (.ci/run)
    python3 scripts/readme_check.py --list     # print the marked blocks and stop

The README is the one source: a fenced block preceded by ``<!-- readme-check: NAME -->`` is
run by this script, exactly as written, with ``bash -euo pipefail`` in the clone's root (each
block in a shell of its own, like a terminal of its own). NAME says when:

- ``install``: first, in a fresh clone of this repository's HEAD (so a new venv, nothing of
  the developer's), with network access for the package index.
- ``quickstart``: next.
- ``serve``: started in the background ("the first terminal"); the script waits until the
  registry answers on its URL and has stored its admin token, and stops it at the end.
- ``by-hand``: with ``serve`` running ("the second terminal").

Several blocks with the same NAME run in README order. Everything after ``install`` runs in
a private network namespace when the machine allows one (``unshare -n``), so the README's
default port is free and nothing there needs the network; else on this machine's loopback.
``HOME`` is a new empty folder (a new user: the default ``LOREG_HOME`` is empty) and no
``LOREG_*`` variable of the caller leaks in. Only the standard library is used: this runs
before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = "README.md"
STAGES = ("install", "quickstart", "serve", "by-hand")
DEFAULT_URL = "http://127.0.0.1:8080"
_MARKER = re.compile(r"^<!--\s*readme-check:\s*([a-z-]+)\s*-->\s*$")
_FENCE = re.compile(r"^(```+|~~~+)")


class ReadmeError(Exception):
    """The README's marked blocks are missing or malformed."""


@dataclass(frozen=True)
class Block:
    stage: str
    line: int  # 1-based line of the block's first command in README.md
    text: str


def extract(text: str) -> list[Block]:
    """Every marked block, in README order; a marker must be followed by a fenced block."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _MARKER.match(lines[i].strip())
        i += 1
        if not m:
            continue
        stage = m.group(1)
        if stage not in STAGES:
            raise ReadmeError(
                f"README line {i}: unknown readme-check stage {stage!r} "
                f"(known: {', '.join(STAGES)})"
            )
        while i < len(lines) and not lines[i].strip():
            i += 1
        fence = _FENCE.match(lines[i].strip()) if i < len(lines) else None
        if fence is None:
            raise ReadmeError(
                f"README line {i}: 'readme-check: {stage}' is not followed by a fenced code block"
            )
        closing = fence.group(1)
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != closing:
            i += 1
        if i >= len(lines):
            raise ReadmeError(f"README line {start}: the {stage} block is never closed")
        body = "\n".join(lines[start:i]).strip("\n")
        if not body.strip():
            raise ReadmeError(f"README line {start}: the {stage} block is empty")
        blocks.append(Block(stage, start + 1, body + "\n"))
        i += 1
    missing = [s for s in STAGES if not any(b.stage == s for b in blocks)]
    if missing:
        raise ReadmeError(
            f"README.md marks no block for: {', '.join(missing)} "
            "(<!-- readme-check: NAME --> before a fenced block)"
        )
    return blocks


# --- running ----------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"readme-check: {message}", flush=True)


def clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LOREG_", "VIRTUAL_ENV", "PYTHON"))
    }
    env["HOME"] = str(home)
    # A shell that activated another venv would put its loreg first: start from the system's.
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        env["PATH"] = os.pathsep.join(
            p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(venv)
        )
    return env


def run_block(block: Block, cwd: Path, env: dict[str, str], timeout: float) -> None:
    log(f"running the {block.stage} block (README.md line {block.line}):")
    for line in block.text.splitlines():
        print(f"    $ {line}", flush=True)
    started = time.monotonic()
    try:
        p = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.text],
            cwd=cwd,
            env=env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(
            f"readme-check: FAILED: the {block.stage} block (README.md line "
            f"{block.line}) ran longer than {timeout:.0f} s"
        ) from None
    if p.returncode != 0:
        raise SystemExit(
            f"readme-check: FAILED: the {block.stage} block (README.md line "
            f"{block.line}) exited {p.returncode}"
        )
    log(f"the {block.stage} block passed in {time.monotonic() - started:.0f} s")


def wait_for_server(proc: subprocess.Popen[bytes], home: Path, timeout: float) -> None:
    """Until the served registry answers /healthz and its admin token is stored."""
    credentials = home / ".local" / "share" / "loreg" / "credentials.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"readme-check: FAILED: the serve block exited {proc.returncode} "
                "before the registry answered"
            )
        try:
            with urllib.request.urlopen(DEFAULT_URL + "/healthz", timeout=2) as resp:
                if resp.status == 200 and credentials.exists():
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise SystemExit(
        f"readme-check: FAILED: the registry did not answer at {DEFAULT_URL} within {timeout:.0f} s"
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def merges(blocks: list[Block]) -> list[tuple[str, bool]]:
    """(output folder, --local?) of every ``loreg merge ... -o DIR`` in the by-hand blocks."""
    found = []
    for block in blocks:
        if block.stage != "by-hand":
            continue
        for line in block.text.splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] == ["loreg", "merge"] and "-o" in words[:-1]:
                found.append((words[words.index("-o") + 1], "--local" in words))
    return found


def expect_outputs(clone: Path, blocks: list[Block]) -> None:
    """The by-hand blocks merge on the registry and with --local; both left a model."""
    found = merges(blocks)
    if not any(local for _, local in found) or all(local for _, local in found):
        raise SystemExit(
            "readme-check: FAILED: the by-hand blocks must merge on the registry "
            "and with --local (`loreg merge ... -o DIR`)"
        )
    for out, _ in found:
        folder = clone / out
        if not (folder / "config.json").is_file() or not list(folder.glob("*.safetensors")):
            raise SystemExit(
                f"readme-check: FAILED: no merged model in {out} "
                "(config.json + *.safetensors) after the by-hand block"
            )


def after_install(clone: Path, home: Path) -> None:
    """Everything after the install block (maybe inside a private network namespace)."""
    blocks = extract((clone / README).read_text())
    env = clean_env(home)
    for block in (b for b in blocks if b.stage == "quickstart"):
        run_block(block, clone, env, timeout=900)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for block in (b for b in blocks if b.stage == "serve"):
            log(f"starting the serve block (README.md line {block.line}) in the background:")
            for line in block.text.splitlines():
                print(f"    $ {line}", flush=True)
            servers.append(
                subprocess.Popen(
                    ["bash", "-euo", "pipefail", "-c", block.text],
                    cwd=clone,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        wait_for_server(servers[-1], home, timeout=180)
        for block in (b for b in blocks if b.stage == "by-hand"):
            run_block(block, clone, env, timeout=900)
    finally:
        for proc in servers:
            stop(proc)
    expect_outputs(clone, blocks)


def private_network() -> list[str]:
    """A command prefix that runs in a new network namespace with loopback up, or []."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return []
    prefix = ["unshare", "--net", "--"]
    probe = subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], capture_output=True)
    return prefix if probe.returncode == 0 else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the marked blocks and stop")
    parser.add_argument(
        "--after-install", nargs=2, metavar=("CLONE", "HOME"), help=argparse.SUPPRESS
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args()

    if args.after_install:
        if os.environ.get("READMECHECK_NETNS"):
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        after_install(Path(args.after_install[0]), Path(args.after_install[1]))
        return 0

    try:
        blocks = extract((ROOT / README).read_text())
    except ReadmeError as exc:
        print(f"readme-check: FAILED: {exc}", file=sys.stderr)
        return 1
    if args.list:
        for b in blocks:
            print(f"--- {b.stage} (README.md line {b.line})\n{b.text}", end="")
        return 0

    work = Path(tempfile.mkdtemp(prefix="loreg-readme-check."))
    clone, home = work / "clone", work / "home"
    home.mkdir()
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        log(f"fresh clone of {head} in {clone}; HOME={home}")
        env = clean_env(home)
        for block in (b for b in extract((clone / README).read_text()) if b.stage == "install"):
            run_block(block, clone, env, timeout=1800)
        prefix = private_network()
        log(
            "the rest runs in a private network namespace"
            if prefix
            else "no private network namespace here: the rest uses this machine's loopback"
        )
        p = subprocess.run(
            [
                *prefix,
                sys.executable,
                str(Path(__file__).resolve()),
                "--after-install",
                str(clone),
                str(home),
            ],
            env={**os.environ, **({"READMECHECK_NETNS": "1"} if prefix else {})},
        )
        if p.returncode != 0:
            return 1
        log("PASSED: README.md's install, quickstart, serve and by-hand blocks ran as written")
        return 0
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
