"""Push/pull throughput of loreg against moto's S3 server, compared with plain boto3.

    .venv/bin/python bench/transfer.py [--mb 500] [--files 4]

Starts moto's S3 server and ``loreg serve`` (SQLite + the S3 store) as separate processes,
builds a version of about ``--mb`` MiB (a valid tiny PEFT adapter plus ``--files`` large
files of random bytes), then in the same run:

- loreg push (hash + upload-check + parallel PUTs through the API, which streams to S3),
- boto3 ``upload_file`` of the same files to the same endpoint,
- loreg pull into an empty cache (307 to presigned S3 URLs, verified, atomic folder),
- boto3 ``download_file`` of the same objects,
- loreg re-push of the unchanged folder (time and bytes uploaded), in-process and via the CLI.

Prints throughput (MiB/s) and the loreg/boto3 ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from loreg.units import MiB

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.1)


T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def build_version(folder: Path, base_folder: Path, total_mb: int, files: int) -> int:
    """A tiny Llama-shaped base + LoRA adapter (torch only) plus large extra files."""
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    h, r = 64, 8
    base = {f"model.layers.0.self_attn.{m}.weight": torch.randn(h, h) for m in ("q_proj", "v_proj")}
    base["model.embed_tokens.weight"] = torch.randn(128, h)
    base_folder.mkdir(parents=True)
    save_file(base, str(base_folder / "model.safetensors"))
    (base_folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    lora = {}
    for m in ("q_proj", "v_proj"):
        key = f"base_model.model.model.layers.0.self_attn.{m}"
        lora[f"{key}.lora_A.weight"] = torch.randn(r, h)
        lora[f"{key}.lora_B.weight"] = torch.randn(h, r)
    folder.mkdir(parents=True)
    save_file(lora, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "task_type": "CAUSAL_LM",
                "r": r,
                "lora_alpha": 16,
                "target_modules": ["q_proj", "v_proj"],
                "base_model_name_or_path": "bench/base",
            }
        )
    )
    each = total_mb * MiB // files
    (folder / "checkpoints").mkdir()
    chunk = os.urandom(8 * MiB)
    for i in range(files):
        with open(folder / "checkpoints" / f"state-{i}.bin", "wb") as f:
            left = each
            while left:
                n = min(left, len(chunk))
                f.write(chunk[:n] if i % 2 == 0 else chunk[::-1][:n])
                f.write(i.to_bytes(4, "little"))  # every file distinct
                left -= n
    # make mtimes clearly older than the first hash, so the hash index may trust them
    past = time.time() - 5
    for p in folder.rglob("*"):
        os.utime(p, (past, past))
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--files", type=int, default=4)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="loreg-bench-"))
    try:
        with s3_registry(tmp) as stack:
            run(args, tmp, stack)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Stack:
    """moto's S3 server and ``loreg serve`` on it, both as processes."""

    url: str
    token: str
    endpoint: str
    s3: Any
    env: dict[str, str]


@contextmanager
def s3_registry(tmp: Path) -> Iterator[Stack]:
    """Start moto (buckets ``loreg`` and ``raw``) and ``loreg serve`` (SQLite + S3, no
    worker) under ``tmp``; stop both at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOREG_", "HF_"))}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    os.environ.update(
        {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    )
    try:
        s3_port = free_port()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        )
        endpoint = f"http://127.0.0.1:{s3_port}"
        wait_http(endpoint + "/moto-api/")
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="loreg")
        s3.create_bucket(Bucket="raw")

        home = tmp / "home"
        api_port = free_port()
        env.update(
            {
                "LOREG_HOME": str(home),
                "LOREG_STORAGE_URL": "s3://loreg/blobs",
                "LOREG_S3_ENDPOINT_URL": endpoint,
            }
        )
        log = open(tmp / "serve.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [str(BIN / "loreg"), "serve", "--port", str(api_port), "--no-worker"],
                stdout=log,
                stderr=log,
                env=env,
            )
        )
        url = f"http://127.0.0.1:{api_port}"
        wait_http(url + "/healthz")
        while not (home / "credentials.json").exists():
            time.sleep(0.1)
        token = json.loads((home / "credentials.json").read_text())["token"]
        yield Stack(url, token, endpoint, s3, env)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def run(args: argparse.Namespace, tmp: Path, stack: Stack) -> None:
    url, token, endpoint, s3, env = stack.url, stack.token, stack.endpoint, stack.s3, stack.env
    from boto3.s3.transfer import TransferConfig

    folder, base = tmp / "adapter", tmp / "base"
    size = build_version(folder, base, args.mb, args.files)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    print(f"version: {len(files)} files, {size / MiB:.1f} MiB; S3 = moto server at {endpoint}")

    from loreg.client import Client

    client_home = tmp / "client-home"
    client = Client(url, token, home=client_home)
    client.register_base(base, "bench/base", upload=False)

    t_push, pushed = timed(lambda: client.push(folder, "admin/bench:v1", base="bench/base"))
    t_repush, repushed = timed(lambda: client.push(folder, "admin/bench:v1", base="bench/base"))
    cli_env = {**env, "LOREG_URL": url, "LOREG_TOKEN": token, "LOREG_HOME": str(client_home)}
    t_cli_repush, cli_out = timed(
        lambda: (
            subprocess.run(
                [
                    str(BIN / "loreg"),
                    "push",
                    str(folder),
                    "admin/bench:v1",
                    "--base",
                    "bench/base",
                    "--json",
                ],
                env=cli_env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    )
    cli_doc = json.loads(str(cli_out))
    t_cli_start, _ = timed(
        lambda: subprocess.run(
            [str(BIN / "loreg"), "--version"], env=cli_env, capture_output=True, check=True
        )
    )

    shutil.rmtree(client_home / "cache" / "blobs", ignore_errors=True)
    t_pull, pulled = timed(lambda: client.pull("admin/bench:v1", tmp / "pulled"))
    t_pull_cached, pulled_cached = timed(lambda: client.pull("admin/bench:v1", tmp / "pulled2"))
    client.close()

    cfg = TransferConfig()  # boto3 defaults: 8 MiB parts, 10 threads

    def raw_up() -> None:
        for p in files:
            s3.upload_file(str(p), "raw", p.relative_to(folder).as_posix(), Config=cfg)

    def raw_down() -> None:
        out = tmp / "raw-down"
        for p in files:
            rel = p.relative_to(folder).as_posix()
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file("raw", rel, str(out / rel), Config=cfg)

    t_raw_up, _ = timed(raw_up)
    t_raw_down, _ = timed(raw_down)

    for p in files:
        rel = p.relative_to(folder)
        assert (tmp / "pulled" / rel).read_bytes() == p.read_bytes(), rel

    def rate(t: float) -> float:
        return size / MiB / t

    print(f"{'':24}{'seconds':>10}{'MiB/s':>10}")
    rows = [
        ("loreg push", t_push),
        ("boto3 upload_file", t_raw_up),
        ("loreg pull (cold cache)", t_pull),
        ("boto3 download_file", t_raw_down),
    ]
    for name, t in rows:
        print(f"{name:24}{t:10.2f}{rate(t):10.1f}")
    print(f"push ratio loreg/boto3: {t_raw_up / t_push:.2f}x  (>= 0.8 wanted)")
    print(f"pull ratio loreg/boto3: {t_raw_down / t_pull:.2f}x  (>= 0.8 wanted)")
    print(
        f"pull with warm cache: {t_pull_cached:.2f} s, "
        f"{pulled_cached.downloaded_bytes} bytes downloaded"
    )
    print(
        f"re-push (client API): {t_repush:.3f} s, "
        f"{repushed.uploaded_bytes} bytes uploaded, "
        f"same version: {repushed.version.number == pushed.version.number}"
    )
    print(
        f"re-push (loreg CLI, process start included): {t_cli_repush:.3f} s, "
        f"{cli_doc['uploaded_bytes']} bytes uploaded, "
        f"version {cli_doc['version']['number']}; bare `loreg --version`: "
        f"{t_cli_start:.3f} s"
    )
    print(
        f"first push uploaded {pushed.uploaded_bytes / MiB:.1f} MiB "
        f"in {pushed.uploaded_files} files; pull downloaded "
        f"{pulled.downloaded_bytes / MiB:.1f} MiB"
    )


if __name__ == "__main__":
    main()
