"""The compatibility report: findings sorted by severity, shown bounded and in one shape."""

from __future__ import annotations

from loreg.formats.report import CompatibilityReport, Finding, fmt_shape


def _report(
    problems: int = 0, warnings: int = 0, code: str = "shape_mismatch"
) -> CompatibilityReport:
    report = CompatibilityReport(modules_checked=3, saved_modules_checked=1)
    for i in range(problems):
        report.add(
            Finding("error", code, f"problem {i}", module=f"m{i}", expected=(4, 2), found=(4, 3))
        )
    for i in range(warnings):
        report.add(Finding("warning", "fan_in_fan_out", f"warning {i}"))
    return report


def test_findings_go_to_their_severity() -> None:
    report = _report(problems=2, warnings=1)
    report.add(Finding("note", "vocabulary_grown", "grown"))
    assert [len(report.problems), len(report.warnings), len(report.notes)] == [2, 1, 1]
    assert not report.ok
    assert _report(warnings=3).ok


def test_format_is_a_verdict_then_one_line_per_finding() -> None:
    lines = _report(problems=1, warnings=1).format().splitlines()
    assert lines[0] == (
        "INCOMPATIBLE: 1 problem(s), 1 warning(s), 3 LoRA module(s) and 1 saved module(s)"
        " checked, base match: unverified"
    )
    assert lines[1:] == [
        "  error[shape_mismatch] m0: problem 0",
        "  warning[fan_in_fan_out] warning 0",
    ]
    assert CompatibilityReport().format().startswith("COMPATIBLE: 0 problem(s)")


def test_format_caps_each_code_and_counts_the_rest() -> None:
    lines = _report(problems=25).format().splitlines()
    shown = [line for line in lines if line.startswith("  error[shape_mismatch] m")]
    assert len(shown) == 20
    assert lines[-1] == "  error[shape_mismatch] ... and 5 more like this (see --json)"


def test_to_dict_limits_the_lists_but_counts_them_all() -> None:
    report = _report(problems=5, warnings=2)
    doc = report.to_dict(limit=2)
    assert len(doc["problems"]) == 2 and doc["problems_total"] == 5
    assert len(doc["warnings"]) == 2 and doc["warnings_total"] == 2
    assert doc["compatible"] is False and doc["match"] == "unverified"
    assert doc["problems"][0] == {
        "severity": "error",
        "code": "shape_mismatch",
        "module": "m0",
        "tensor": None,
        "expected": [4, 2],
        "found": [4, 3],
        "message": "problem 0",
        "details": None,
    }
    assert len(report.to_dict()["problems"]) == 5


def test_fmt_shape() -> None:
    assert fmt_shape((4096, 16)) == "[4096, 16]"
    assert fmt_shape(()) == "[]"
    assert fmt_shape(None) == "none"


def test_format_can_be_cut_for_an_error_message() -> None:
    report = _report(problems=25)
    full = report.format()
    cut = report.format(max_chars=100)
    assert cut == full[:100] + "\n  ..."
    assert report.format(max_chars=len(full)) == full
