"""Downloads through the Hugging Face Hub protocol against `loreg pull` and plain boto3.

    .venv/bin/python bench/hub.py [--mb 500] [--files 4]

Starts moto's S3 server and ``loreg serve`` (SQLite + the S3 store) as separate processes,
pushes a version of about ``--mb`` MiB (a valid tiny PEFT adapter plus ``--files`` large
files; the same builder as bench/transfer.py), then downloads it, each into an empty cache:

- ``huggingface_hub.snapshot_download`` with ``endpoint=`` loreg (repo info, tree, then per
  file HEAD + GET: 302 to presigned S3 URLs),
- ``loreg pull`` (the Python client: parallel ranged downloads, verified),
- boto3 ``download_file`` of the same files from the same S3 server.

Checks the three copies are byte-identical and prints the speed ratios (snapshot_download
against loreg pull: >= 0.8x wanted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer import Stack, build_version, s3_registry, timed

from loreg.units import MiB


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--files", type=int, default=4)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="loreg-bench-hub-"))
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        with s3_registry(tmp) as stack:
            run(args, tmp, stack)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path, stack: Stack) -> None:
    from boto3.s3.transfer import TransferConfig
    from huggingface_hub import snapshot_download

    from loreg.client import Client

    url, token, s3 = stack.url, stack.token, stack.s3
    folder, base = tmp / "adapter", tmp / "base"
    size = build_version(folder, base, args.mb, args.files)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    print(
        f"version: {len(files)} files, {size / MiB:.1f} MiB; S3 = moto server at {stack.endpoint}"
    )

    client = Client(url, token, home=tmp / "client-home")
    client.register_base(base, "bench/base", upload=False)
    client.push(folder, "admin/bench", base="bench/base")
    cfg = TransferConfig()  # boto3 defaults: 8 MiB parts, 10 threads
    for p in files:
        s3.upload_file(str(p), "raw", p.relative_to(folder).as_posix(), Config=cfg)

    t_hub, hub_dir = timed(
        lambda: snapshot_download(
            "admin/bench", endpoint=url, token=token, cache_dir=tmp / "hf-cache"
        )
    )
    t_pull, _ = timed(lambda: client.pull("admin/bench", tmp / "pulled"))
    client.close()

    def raw_down() -> None:
        for p in files:
            rel = p.relative_to(folder).as_posix()
            (tmp / "raw-down" / rel).parent.mkdir(parents=True, exist_ok=True)
            s3.download_file("raw", rel, str(tmp / "raw-down" / rel), Config=cfg)

    t_raw, _ = timed(raw_down)
    for p in files:
        rel = p.relative_to(folder)
        data = p.read_bytes()
        for copy in (Path(str(hub_dir)), tmp / "pulled", tmp / "raw-down"):
            assert (copy / rel).read_bytes() == data, (copy, rel)

    print(f"{'':34}{'seconds':>10}{'MiB/s':>10}")
    for name, t in (
        ("snapshot_download (HF_ENDPOINT)", t_hub),
        ("loreg pull (cold cache)", t_pull),
        ("boto3 download_file", t_raw),
    ):
        print(f"{name:34}{t:10.2f}{size / MiB / t:10.1f}")
    print(f"snapshot_download vs loreg pull: {t_pull / t_hub:.2f}x  (>= 0.8 wanted)")
    print(f"snapshot_download vs boto3:      {t_raw / t_hub:.2f}x")
    print("all three copies byte-identical")


if __name__ == "__main__":
    main()
