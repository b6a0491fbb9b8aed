"""Install profiles: which commands need an extra, and what to run when it is missing.

``pip install loreg`` is the client (push, pull, ls, show, jobs, validate ...); the ``merge``
extra adds the local merge engine (torch, safetensors) and ``server`` everything ``loreg
serve``, ``loreg worker``, ``loreg db`` and ``loreg gc`` need. The extras are defined once,
in pyproject.toml: this module reads them back from the installed package's metadata, so a
command that lacks its extra fails with one line naming the exact pip command, before it
imports anything it cannot have.
"""

from __future__ import annotations

import json
import re
import shlex
from importlib import metadata
from urllib.parse import unquote, urlsplit

from loreg.errors import LoregError

DISTRIBUTION = "loreg"
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


class MissingExtra(LoregError):
    """A command needs an optional part of loreg that this installation does not have."""

    code = "missing_extra"


def requirements(extra: str, *, dist: str = DISTRIBUTION) -> list[str]:
    """Names of the distributions ``extra`` installs (``loreg[other]`` expanded); empty when
    the package metadata cannot be read (a source tree run without installing)."""
    try:
        declared = metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return []
    names: list[str] = []
    for spec in declared:
        requirement, _, marker = spec.partition(";")
        wanted = _EXTRA_MARKER.search(marker)
        m = _NAME.match(requirement)
        if wanted is None or wanted.group(1) != extra or m is None:
            continue
        name, inner = m.group(1), m.group(2)
        if _canonical(name) == _canonical(dist):
            for other in (inner or "").split(","):
                if other.strip():
                    names += requirements(other.strip(), dist=dist)
        else:
            names.append(name)
    return list(dict.fromkeys(names))


def missing(extra: str) -> list[str]:
    """The distributions of ``extra`` that are not installed."""
    gone = []
    for name in requirements(extra):
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            gone.append(name)
    return gone


def install_command(extra: str) -> str:
    """The pip command that adds ``extra`` to this installation (from where it came)."""
    source = _local_source()
    if source is None:
        return f"pip install '{DISTRIBUTION}[{extra}]'"
    folder, editable = source
    return "pip install " + ("-e " if editable else "") + shlex.quote(f"{folder}[{extra}]")


def require(extra: str, command: str) -> None:
    """``MissingExtra`` (exit 1, one line) when ``loreg COMMAND`` cannot run here."""
    gone = missing(extra)
    if not gone:
        return
    shown = ", ".join(gone[:3]) + (", ..." if len(gone) > 3 else "")
    raise MissingExtra(
        f"`loreg {command}` needs loreg's {extra} extra, which this installation lacks "
        f"({shown} not installed): {install_command(extra)}",
        details={"extra": extra, "missing": gone, "install": install_command(extra)},
    )


def _local_source() -> tuple[str, bool] | None:
    """(folder, editable) when loreg was installed from a folder (a clone), else ``None``."""
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    try:
        info = json.loads(text or "null")
    except ValueError:
        return None
    if not isinstance(info, dict) or not str(info.get("url", "")).startswith("file://"):
        return None
    dir_info = info.get("dir_info")
    if not isinstance(dir_info, dict):
        return None  # a wheel or an archive file: the index name is the better advice
    return unquote(urlsplit(str(info["url"])).path), bool(dir_info.get("editable"))


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
