"""Finding a base tensor by the name an adapter gives it.

An adapter names base tensors as the model names them; the checkpoint may store one under
another name (transformers' conversion rules), share it with a tied layer, or prefix every
name differently (a model wrapped or renamed after training). ``BaseLookup`` resolves all
three, and ``find_rewrite`` discovers the prefix rewrite that explains most unresolved names.
"""

from __future__ import annotations

import re

from loreg.formats.report import Shape
from loreg.formats.types import BaseManifest

_LAYER_INDEX = re.compile(r"^(?P<prefix>.*?\.)(?P<index>\d+)\.")


class BaseLookup:
    """Base tensor lookup with tied-weight aliases, the checkpoint's renamings (transformers'
    conversion rules) and an optional prefix rewrite."""

    def __init__(self, manifest: BaseManifest, renames: dict[str, str] | None = None) -> None:
        self.manifest = manifest
        self.rewrite: tuple[str, str] | None = None
        self.renames = renames or {}

    def raw(self, name: str) -> Shape | None:
        name = self.renames.get(name, name)
        if name in self.manifest.tensors:
            return self.manifest.tensors[name][1]
        alias = self.manifest.aliases.get(name)
        if alias is not None and alias in self.manifest.tensors:
            return self.manifest.tensors[alias][1]
        return None

    def name(self, name: str) -> str:
        if name in self.renames:
            return self.renames[name]
        if self.rewrite and name.startswith(self.rewrite[0]):
            return self.rewrite[1] + name[len(self.rewrite[0]) :]
        return name

    def shape(self, name: str) -> Shape | None:
        return self.raw(self.name(name))


def _has_digit_part(prefix: str) -> bool:
    return any(p.isdigit() for p in prefix.split(".") if p)


def find_rewrite(names: list[str], base: BaseLookup) -> tuple[tuple[str, str], int] | None:
    """The (adapter prefix -> base prefix) rewrite that maps most unresolved names, if any."""
    if not names:
        return None
    base_names = list(base.manifest.tensors) + list(base.manifest.aliases)
    candidates: set[tuple[str, str]] = set()
    for n in names[:8]:
        parts = n.split(".")
        for i in range(0, len(parts) - 1):
            p = ".".join(parts[:i]) + ("." if i else "")
            if _has_digit_part(p):
                break
            s = n[len(p) :]
            for b in base_names:
                if b == s or b.endswith("." + s):
                    q = b[: len(b) - len(s)]
                    if q != p and not _has_digit_part(q):
                        candidates.add((p, q))
    best: tuple[tuple[str, str], int] | None = None
    for p, q in sorted(candidates):
        score = sum(1 for n in names if n.startswith(p) and base.raw(q + n[len(p) :]) is not None)
        if score and (best is None or score > best[1]):
            best = ((p, q), score)
    return best


def layer_hint(name: str, base: BaseLookup) -> str:
    """'the base has layers 0..1 only' when the name's layer index is beyond the base's."""
    m = _LAYER_INDEX.match(name)
    if not m:
        return ""
    prefix = m["prefix"]
    indices = set()
    for b in base.manifest.tensors:
        if b.startswith(prefix):
            head = b[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                indices.add(int(head))
    if indices and int(m["index"]) not in indices:
        return (
            f" (the base has {len(indices)} layer(s) under '{prefix}', indices"
            f" {min(indices)}..{max(indices)}; the adapter was trained on a deeper model)"
        )
    return ""
