"""The tiny models the end-to-end CLI tests push and pull (built by the ``models`` fixture of
tests/cli/conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass

from tests.factories.tiny_models import TinyAdapter, TinyModel


@dataclass
class Models:
    base: TinyModel
    adapter: TinyAdapter
    adapter2: TinyAdapter
    wrong_base: TinyModel
