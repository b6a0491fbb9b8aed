"""The adapter pages over HTTP on both backends: search, one adapter, one version, its model
card, two versions compared, and what a private adapter shows to whom."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.factories.cards import HOSTILE_CARD, push_with_card
from tests.factories.ui_world import World, page_html, world_models


def test_adapter_list_search_and_filters(world: World) -> None:
    ui = world.ui()
    page = page_html(ui.get("/ui/adapters"))
    for name in ("alpha", "beta", "gamma"):
        assert f"{world.org}/{name}" in page
    assert world.secret not in page  # private, signed out
    assert page_html(ui.get("/ui/")) == page or "Adapters" in page_html(ui.get("/ui/"))

    def found(**params: str | list[str]) -> set[str]:
        text = page_html(ui.get("/ui/adapters", params=params))
        return set(re.findall(rf'href="/ui/adapters/({re.escape(world.org)}/[a-z]+)"', text))

    org = world.org
    assert found(namespace=org) == {world.alpha, world.beta, world.gamma}
    assert found(namespace=org, rank_min="8") == {world.beta}
    assert found(namespace=org, rank_max="4") == {world.alpha, world.gamma}
    assert found(namespace=org, target="k_proj") == {world.alpha, world.gamma}
    assert found(namespace=org, label="dataset=dolly") == {world.beta}
    assert found(namespace=org, text="gam") == {world.gamma}
    assert found(base=world.base) == {world.alpha, world.beta, world.gamma}
    # bad filter values: a 400 page with the message, not a 500
    for bad in (
        {"rank_min": "x"},
        {"namespace": "Not Valid!"},
        {"label": "nokey"},
        {"cursor": "garbage"},
        {"base": "a/b/c"},
    ):
        r = ui.get("/ui/adapters", params=bad)
        assert r.status_code == 400, (bad, r.status_code)
        assert 'role="alert"' in page_html(r, 400)
    # a NUL: SQLite searches for it, PostgreSQL cannot store it (a 400); never a 500
    assert ui.get("/ui/adapters", params={"text": "a\x00b"}).status_code in (200, 400)


def test_pagination_uses_the_service_cursor(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("loreg.ui.adapter_pages.PAGE_SIZE", 2)
    ui = world.ui()
    first = page_html(ui.get("/ui/adapters", params={"namespace": world.org}))
    m = re.search(r'href="(/ui/adapters\?[^"]*cursor=[^"]+)" rel="next"', first)
    assert m, first
    second = page_html(ui.get(m.group(1).replace("&amp;", "&")))
    names = lambda t: set(re.findall(r'href="/ui/adapters/([^"/]+/[a-z]+)"', t))  # noqa: E731
    assert names(first) and names(second) and not names(first) & names(second)
    assert names(first) | names(second) == {world.alpha, world.beta, world.gamma}


def test_adapter_page(world: World) -> None:
    ui = world.ui()
    page = page_html(ui.get(f"/ui/adapters/{world.alpha}"))
    assert f"loreg pull {world.alpha}:latest" in page
    assert page.count('href="/ui/adapters/' + world.alpha + "/versions/") >= 2
    assert "stable" in page and "latest" in page  # tags
    assert "alpaca" in page  # labels
    assert "&#34;target_modules&#34;" in page or "&quot;target_modules&quot;" in page  # config
    assert "state-valid" in page  # validated by the worker
    assert "No problems found." in page
    # lineage of alpha@2: one child, gamma@1, with its weight and method
    assert "<svg" in page and f"{world.gamma}@1" in page and "w=0.7 · ties" in page
    child = page_html(ui.get(f"/ui/adapters/{world.gamma}"))
    assert f"{world.alpha}@2" in child and f"{world.beta}@1" in child
    assert "w=0.3 · ties" in child and 'class="lineage"' in child


def test_version_page_has_the_module_picture(world: World) -> None:
    ui = world.ui()
    page = page_html(ui.get(f"/ui/adapters/{world.alpha}/versions/1"))
    assert 'class="heatmap"' in page and 'role="img"' in page
    assert "self_attn.q_proj" in page and "self_attn.o_proj" in page
    table = page.split('data-testid="norms"', 1)[1]
    rows = re.findall(r"<tr><td>(\d+)</td><td>([a-z_.]+)</td>", table)
    assert len(rows) == 8  # 2 layers x q/k/v/o
    assert f"loreg pull {world.alpha}@1" in page
    assert "sha256:" in page


def test_model_card_is_rendered_and_sanitised(world: World, tmp_path: Path) -> None:
    client = world.server.client(world.owner.token)
    adapter = world_models(world).adapter.path
    r = push_with_card(client, adapter, tmp_path, f"{world.org}/carded", world.base, HOSTILE_CARD)
    assert r.status_code == 201, r.text
    ui = world.ui()
    for path in (f"/ui/adapters/{world.org}/carded", f"/ui/adapters/{world.org}/carded/versions/1"):
        page = page_html(ui.get(path))
        card = page.split('data-testid="model-card">', 1)[1].split("</article>", 1)[0]
        assert "<h3>Support bot</h3>" in card and "<strong>tickets-v3</strong>" in card
        link = '<a href="https://ci.example.com/runs/42" rel="nofollow noopener noreferrer">'
        assert link in card
        assert "<td>0.91</td>" in card  # tables
        # nothing executable or fetched passes: tags are text, the script link is not a link
        assert (
            "<script" not in card
            and "<img" not in card
            and "onerror=" not in card.replace("onerror=&quot;", "")
        )
        assert "&lt;script&gt;" in card and 'href="javascript' not in card.lower()
        assert "template comment" not in card
        assert 'src="https://tracker.example' not in page
        assert "license: apache-2.0" in page  # front matter, shown as text
    # PEFT's own card (YAML front matter, template comments) renders too
    peft_card = page_html(ui.get(f"/ui/adapters/{world.beta}/versions/1"))
    assert "<h3>Model Card for Model ID</h3>" in peft_card and "library_name: peft" in peft_card
    assert "Provide a quick summary" not in peft_card
    # a version without README.md says so
    assert (
        push_with_card(client, adapter, tmp_path, f"{world.org}/bare", world.base, None).status_code
        == 201
    )
    assert "has no README.md" in page_html(ui.get(f"/ui/adapters/{world.org}/bare"))


def test_compare_page(world: World) -> None:
    ui = world.ui()
    page = page_html(ui.get(f"/ui/adapters/{world.alpha}/compare"))  # defaults: v1 against v2
    assert "Compare versions of" in page and 'value="1" selected' in page
    facts = page.split('data-testid="facts"', 1)[1].split("</table>", 1)[0]
    assert "rank" in facts and "<code>4</code>" in facts
    norms = page.split('data-testid="norms"', 1)[1].split("</table>", 1)[0]
    assert norms.count("self_attn.q_proj") == 2  # two layers
    assert "\N{MULTIPLICATION SIGN}" in norms  # a ratio each
    assert 'class="differs"' in norms  # other weights: other norms
    labels = page.split('data-testid="labels"', 1)[1].split("</table>", 1)[0]
    assert "dataset" in labels and "alpaca" in labels
    adapter_page = page_html(ui.get(f"/ui/adapters/{world.alpha}"))
    assert f'href="/ui/adapters/{world.alpha}/compare"' in adapter_page
    assert "Compare with v1" in page_html(ui.get(f"/ui/adapters/{world.alpha}/versions/2"))

    # two adapters' worth of difference: targets and rank (beta has r=8 on q/v only)
    explicit = page_html(ui.get(f"/ui/adapters/{world.alpha}/compare", params={"a": "2", "b": "1"}))
    assert 'value="2" selected' in explicit
    one = page_html(ui.get(f"/ui/adapters/{world.beta}/compare"))
    assert "only one version" in one
    # bad input and hidden things are the friendly 404, never a 500
    for params in ({"a": "x"}, {"a": "0"}, {"b": "99"}, {"a": "-1"}):
        page_html(ui.get(f"/ui/adapters/{world.alpha}/compare", params=params), 404)
    page_html(ui.get(f"/ui/adapters/{world.secret}/compare"), 404)
    page_html(world.ui(world.outsider).get(f"/ui/adapters/{world.secret}/compare"), 404)
    member = world.ui(world.member)
    assert world.secret in page_html(member.get(f"/ui/adapters/{world.secret}/compare"))


def test_private_adapter_visibility(world: World) -> None:
    paths = [f"/ui/adapters/{world.secret}", f"/ui/adapters/{world.secret}/versions/1"]
    for who in (None, world.outsider):
        ui = world.ui(who)
        for path in paths:
            page_html(ui.get(path), 404)
        assert world.secret not in ui.get("/ui/adapters").text
    ui = world.ui(world.member)
    for path in paths:
        assert world.secret in page_html(ui.get(path))
    assert world.secret in ui.get("/ui/adapters").text
    # the API agrees, token for token
    for account, status in ((world.outsider, 404), (world.member, 200)):
        r = world.server.client(account.token).get(f"/adapters/{world.secret}")
        assert r.status_code == status


def test_private_lineage_is_not_shown_to_outsiders(world: World) -> None:
    from loreg.db.models import Lineage
    from tests.factories.ui_world import version_id

    with world.server.app.state.sessionmaker() as s:
        s.add(
            Lineage(
                child_version_id=version_id(world.server, world.org, "secret", 1),
                parent_version_id=version_id(world.server, world.org, "alpha", 2),
                position=0,
                weight=1.0,
                method="linear",
                params={},
            )
        )
        s.commit()
    assert world.secret not in world.ui().get(f"/ui/adapters/{world.alpha}").text
    assert world.secret not in world.ui(world.outsider).get(f"/ui/adapters/{world.alpha}").text
    assert f"{world.secret}@1" in world.ui(world.member).get(f"/ui/adapters/{world.alpha}").text
