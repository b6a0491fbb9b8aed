"""Adapters with a model card of our choosing (README.md), pushed over raw HTTP."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from tests.factories.pushes import push

#: Markdown, a table, front matter, a comment, and things that must never run or load.
HOSTILE_CARD = """---
license: apache-2.0
---
# Support bot

<!-- a template comment that must not show -->
Trained on **tickets-v3**. See [the run](https://ci.example.com/runs/42).

<script>window.pwned = 1</script>
<img src=x onerror="window.pwned = 2">
[click](javascript:window.pwned=3) ![pixel](https://tracker.example/p.png)

| metric | value |
|---|---|
| accuracy | 0.91 |
"""


def push_with_card(
    client: httpx.Client, adapter: Path, work: Path, target: str, base: str, card: str | None
) -> httpx.Response:
    """Push a copy of ``adapter`` whose README.md is ``card`` (``None``: no README.md)."""
    folder = work / target.replace("/", "--")
    shutil.copytree(adapter, folder)
    readme = folder / "README.md"
    if card is None:
        readme.unlink(missing_ok=True)
    else:
        readme.write_text(card)
    return push(client, folder, target, base=base, public=True)
