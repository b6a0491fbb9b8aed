"""The base model pages over HTTP on both backends."""

from __future__ import annotations

from tests.factories.ui_world import World, page_html


def test_base_pages(world: World) -> None:
    ui = world.ui()
    page = page_html(ui.get(f"/ui/bases/{world.base}"))
    assert "sha256:" in page and "Parameters" in page
    for name in ("alpha", "beta", "gamma"):
        assert f"{world.org}/{name}" in page
    assert world.secret not in page
    member_page = page_html(world.ui(world.member).get(f"/ui/bases/{world.base}"))
    assert world.secret in member_page
    assert world.base in page_html(ui.get("/ui/bases"))
