"""docs/configuration.md lists exactly the settings the code reads; no doc names a
``LOREG_*`` variable that does not exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from loreg.config import Settings, is_internal

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    path = ROOT / "scripts" / "config_docs.py"
    spec = importlib.util.spec_from_file_location("config_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_table_is_current() -> None:
    gen = _generator()
    text = (ROOT / "docs" / "configuration.md").read_text()
    assert gen.updated(text) == text, (
        "docs/configuration.md is out of date: run `python scripts/config_docs.py`"
    )


def test_every_setting_is_in_the_reference() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for name, field in Settings.model_fields.items():
        if not is_internal(field.json_schema_extra):
            assert f"`LOREG_{name.upper()}`" in text, name


def test_settings_for_the_tests_stay_out_of_the_user_docs() -> None:
    internal = [
        f"LOREG_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if is_internal(field.json_schema_extra)
    ]
    assert internal == ["LOREG_WORKER_TEST_DELAY_SECONDS"]
    for path in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        for name in internal:
            assert name not in path.read_text(), f"{path.name} documents {name}"


def test_docs_name_only_real_variables() -> None:
    fields = {f"LOREG_{name.upper()}" for name in Settings.model_fields}
    sources = [
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "README.md",
        ROOT / "docker-compose.yml",
    ]
    for path in sources:
        for match in set(re.findall(r"\bLOREG_[A-Z0-9_]*[A-Z0-9]", path.read_text())):
            assert match in fields, f"{path.name} mentions {match}, which is not a setting"
