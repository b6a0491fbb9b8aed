"""The compatibility report: findings (problems, warnings, notes) and how they are shown.

One shape for every consumer: stored with a version, returned in a 422, printed by
``loreg validate`` (``format``) and bounded in size whatever the adapter (``to_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "note"]
Shape = tuple[int, ...]


def fmt_shape(shape: Shape | None) -> str:
    """``[4096, 16]`` as messages write a shape; ``none`` for a missing one."""
    return "none" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


_MAX_FORMAT_PER_CODE = 20


@dataclass(frozen=True)
class Finding:
    """One problem, warning or note; ``module`` is the adapter's module (base naming)."""

    severity: Severity
    code: str
    message: str
    module: str | None = None
    tensor: str | None = None
    expected: Shape | None = None
    found: Shape | None = None
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "module": self.module,
            "tensor": self.tensor,
            "expected": list(self.expected) if self.expected is not None else None,
            "found": list(self.found) if self.found is not None else None,
            "message": self.message,
            "details": self.details,
        }


MatchKind = Literal["exact", "structural", "unverified", "different"]


@dataclass
class CompatibilityReport:
    """Everything wrong (``problems``), doubtful (``warnings``) or worth knowing (``notes``)."""

    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)
    match: MatchKind = "unverified"
    modules_checked: int = 0
    saved_modules_checked: int = 0
    token_modules_checked: int = 0
    base_fingerprint: str | None = None
    base_structure_hash: str | None = None
    expected_fingerprint: str | None = None
    prefix_rewrite: tuple[str, str] | None = None  # (adapter prefix, base prefix) detected
    match_hint: str | None = None  # what would make the match ``exact``, when it is not

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, finding: Finding) -> None:
        {"error": self.problems, "warning": self.warnings, "note": self.notes}[
            finding.severity
        ].append(finding)

    def to_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready; stored with the version and returned in 422 errors.

        With ``limit``, each list keeps its first ``limit`` findings; ``*_total`` always
        count them all, so a report's size is bounded whatever the adapter.
        """

        def first(items: list[Finding]) -> list[dict[str, Any]]:
            return [f.to_dict() for f in (items if limit is None else items[:limit])]

        return {
            "compatible": self.ok,
            "match": self.match,
            "modules_checked": self.modules_checked,
            "saved_modules_checked": self.saved_modules_checked,
            "token_modules_checked": self.token_modules_checked,
            "base_fingerprint": self.base_fingerprint,
            "base_structure_hash": self.base_structure_hash,
            "expected_fingerprint": self.expected_fingerprint,
            "prefix_rewrite": list(self.prefix_rewrite) if self.prefix_rewrite else None,
            "match_hint": self.match_hint,
            "problems": first(self.problems),
            "warnings": first(self.warnings),
            "notes": first(self.notes),
            "problems_total": len(self.problems),
            "warnings_total": len(self.warnings),
            "notes_total": len(self.notes),
        }

    def format(self, *, max_chars: int | None = None) -> str:
        """Human text for a terminal or a CI log: a verdict line, then one line per finding;
        cut at ``max_chars`` (marked ``...``) where it goes into an error message."""
        verdict = "COMPATIBLE" if self.ok else "INCOMPATIBLE"
        counts = (
            f"{len(self.problems)} problem(s), {len(self.warnings)} warning(s),"
            f" {self.modules_checked} LoRA module(s) and {self.saved_modules_checked} saved"
            f" module(s) checked"
            + (
                f", {self.token_modules_checked} trainable-token layer(s)"
                if self.token_modules_checked
                else ""
            )
            + f", base match: {self.match}"
        )
        lines = [f"{verdict}: {counts}"]
        if self.match_hint:
            lines.append(f"  base match {self.match}: {self.match_hint}")
        for label, items in (
            ("error", self.problems),
            ("warning", self.warnings),
            ("note", self.notes),
        ):
            shown: dict[str, int] = {}
            hidden: dict[str, int] = {}
            for f in items:
                if shown.get(f.code, 0) >= _MAX_FORMAT_PER_CODE:
                    hidden[f.code] = hidden.get(f.code, 0) + 1
                    continue
                shown[f.code] = shown.get(f.code, 0) + 1
                where = f"{f.module}: " if f.module else ""
                lines.append(f"  {label}[{f.code}] {where}{f.message}")
            for code, n in hidden.items():
                lines.append(f"  {label}[{code}] ... and {n} more like this (see --json)")
        text = "\n".join(lines)
        if max_chars is not None and len(text) > max_chars:
            text = text[:max_chars] + "\n  ..."
        return text
