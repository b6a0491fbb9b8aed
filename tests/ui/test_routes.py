"""The UI's pages over HTTP on both backends: every page renders what it should, unknown or
malformed ids answer the friendly 404 page (never a 500), visibility follows the API's
rules, and the session cookie has the right flags."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from loreg.ui.routes import COOKIE, csrf_token
from tests.factories.cards import HOSTILE_CARD, push_with_card
from tests.fixtures.api import RegistryServer
from tests.ui.conftest import World, world_models


def _html(r: httpx.Response, status: int = 200) -> str:
    assert r.status_code == status, (r.status_code, r.text[:2000])
    assert r.headers["content-type"].startswith("text/html")
    assert len(re.findall(r"<h1[ >]", r.text)) == 1, "one h1 per page"
    assert 'href="#main"' in r.text, "skip link"
    return r.text


def test_adapter_list_search_and_filters(world: World) -> None:
    ui = world.ui()
    page = _html(ui.get("/ui/adapters"))
    for name in ("alpha", "beta", "gamma"):
        assert f"{world.org}/{name}" in page
    assert world.secret not in page  # private, signed out
    assert _html(ui.get("/ui/")) == page or "Adapters" in _html(ui.get("/ui/"))

    def found(**params: str | list[str]) -> set[str]:
        text = _html(ui.get("/ui/adapters", params=params))
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
    for bad in ({"rank_min": "x"}, {"namespace": "Not Valid!"}, {"label": "nokey"},
                {"cursor": "garbage"}, {"base": "a/b/c"}):
        r = ui.get("/ui/adapters", params=bad)
        assert r.status_code == 400, (bad, r.status_code)
        assert 'role="alert"' in _html(r, 400)
    # a NUL: SQLite searches for it, PostgreSQL cannot store it (a 400); never a 500
    assert ui.get("/ui/adapters", params={"text": "a\x00b"}).status_code in (200, 400)


def test_pagination_uses_the_service_cursor(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("loreg.ui.routes.PAGE_SIZE", 2)
    ui = world.ui()
    first = _html(ui.get("/ui/adapters", params={"namespace": world.org}))
    m = re.search(r'href="(/ui/adapters\?[^"]*cursor=[^"]+)" rel="next"', first)
    assert m, first
    second = _html(ui.get(m.group(1).replace("&amp;", "&")))
    names = lambda t: set(re.findall(r'href="/ui/adapters/([^"/]+/[a-z]+)"', t))  # noqa: E731
    assert names(first) and names(second) and not names(first) & names(second)
    assert names(first) | names(second) == {world.alpha, world.beta, world.gamma}


def test_adapter_page(world: World) -> None:
    ui = world.ui()
    page = _html(ui.get(f"/ui/adapters/{world.alpha}"))
    assert f"loreg pull {world.alpha}:latest" in page
    assert page.count('href="/ui/adapters/' + world.alpha + '/versions/') >= 2
    assert "stable" in page and "latest" in page  # tags
    assert "alpaca" in page  # labels
    assert "&#34;target_modules&#34;" in page or "&quot;target_modules&quot;" in page  # config
    assert "state-valid" in page  # validated by the worker
    assert "No problems found." in page
    # lineage of alpha@2: one child, gamma@1, with its weight and method
    assert "<svg" in page and f"{world.gamma}@1" in page and "w=0.7 · ties" in page
    child = _html(ui.get(f"/ui/adapters/{world.gamma}"))
    assert f"{world.alpha}@2" in child and f"{world.beta}@1" in child
    assert "w=0.3 · ties" in child and 'class="lineage"' in child


def test_version_page_has_the_module_picture(world: World) -> None:
    ui = world.ui()
    page = _html(ui.get(f"/ui/adapters/{world.alpha}/versions/1"))
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
    r = push_with_card(client, adapter, tmp_path, f"{world.org}/carded", world.base,
                       HOSTILE_CARD)
    assert r.status_code == 201, r.text
    ui = world.ui()
    for path in (f"/ui/adapters/{world.org}/carded", f"/ui/adapters/{world.org}/carded/versions/1"):
        page = _html(ui.get(path))
        card = page.split('data-testid="model-card">', 1)[1].split("</article>", 1)[0]
        assert "<h3>Support bot</h3>" in card and "<strong>tickets-v3</strong>" in card
        link = '<a href="https://ci.example.com/runs/42" rel="nofollow noopener noreferrer">'
        assert link in card
        assert "<td>0.91</td>" in card  # tables
        # nothing executable or fetched passes: tags are text, the script link is not a link
        assert "<script" not in card and "<img" not in card and "onerror=" not in card.replace(
            "onerror=&quot;", "")
        assert "&lt;script&gt;" in card and 'href="javascript' not in card.lower()
        assert "template comment" not in card
        assert 'src="https://tracker.example' not in page
        assert "license: apache-2.0" in page  # front matter, shown as text
    # PEFT's own card (YAML front matter, template comments) renders too
    peft_card = _html(ui.get(f"/ui/adapters/{world.beta}/versions/1"))
    assert "<h3>Model Card for Model ID</h3>" in peft_card and "library_name: peft" in peft_card
    assert "Provide a quick summary" not in peft_card
    # a version without README.md says so
    assert push_with_card(client, adapter, tmp_path, f"{world.org}/bare", world.base,
                          None).status_code == 201
    assert "has no README.md" in _html(ui.get(f"/ui/adapters/{world.org}/bare"))


def test_compare_page(world: World) -> None:
    ui = world.ui()
    page = _html(ui.get(f"/ui/adapters/{world.alpha}/compare"))  # defaults: v1 against v2
    assert "Compare versions of" in page and 'value="1" selected' in page
    facts = page.split('data-testid="facts"', 1)[1].split("</table>", 1)[0]
    assert "rank" in facts and "<code>4</code>" in facts
    norms = page.split('data-testid="norms"', 1)[1].split("</table>", 1)[0]
    assert norms.count("self_attn.q_proj") == 2  # two layers
    assert "\N{MULTIPLICATION SIGN}" in norms  # a ratio each
    assert 'class="differs"' in norms  # other weights: other norms
    labels = page.split('data-testid="labels"', 1)[1].split("</table>", 1)[0]
    assert "dataset" in labels and "alpaca" in labels
    adapter_page = _html(ui.get(f"/ui/adapters/{world.alpha}"))
    assert f'href="/ui/adapters/{world.alpha}/compare"' in adapter_page
    assert "Compare with v1" in _html(ui.get(f"/ui/adapters/{world.alpha}/versions/2"))

    # two adapters' worth of difference: targets and rank (beta has r=8 on q/v only)
    explicit = _html(ui.get(f"/ui/adapters/{world.alpha}/compare", params={"a": "2", "b": "1"}))
    assert 'value="2" selected' in explicit
    one = _html(ui.get(f"/ui/adapters/{world.beta}/compare"))
    assert "only one version" in one
    # bad input and hidden things are the friendly 404, never a 500
    for params in ({"a": "x"}, {"a": "0"}, {"b": "99"}, {"a": "-1"}):
        _html(ui.get(f"/ui/adapters/{world.alpha}/compare", params=params), 404)
    _html(ui.get(f"/ui/adapters/{world.secret}/compare"), 404)
    _html(world.ui(world.outsider).get(f"/ui/adapters/{world.secret}/compare"), 404)
    assert world.secret in _html(world.ui(world.member).get(f"/ui/adapters/{world.secret}/compare"))


def test_base_pages(world: World) -> None:
    ui = world.ui()
    page = _html(ui.get(f"/ui/bases/{world.base}"))
    assert "sha256:" in page and "Parameters" in page
    for name in ("alpha", "beta", "gamma"):
        assert f"{world.org}/{name}" in page
    assert world.secret not in page
    member_page = _html(world.ui(world.member).get(f"/ui/bases/{world.base}"))
    assert world.secret in member_page
    assert world.base in _html(ui.get("/ui/bases"))


@pytest.mark.parametrize("path", [
    "/ui/adapters/nobody/nothing",
    "/ui/adapters/UPPER/case",
    "/ui/adapters/a%20b/c",
    "/ui/adapters/" + "x" * 300 + "/y",
    "/ui/adapters/%00/x",
    "/ui/adapters/ns/name/versions/1",
    "/ui/adapters/ns/name/versions/0",
    "/ui/adapters/ns/name/versions/abc",
    "/ui/adapters/ns/name/versions/99999999999999999999",
    "/ui/adapters/ns/name/versions/-1",
    "/ui/adapters/ns/name/versions/%E2%91%A0",
    "/ui/bases/nobody/nothing",
    "/ui/bases/a/b/c",
    "/ui/bases/%2E%2E",
    "/ui/bases/%00",
    "/ui/no/such/page",
    "/ui/static/../routes.py",
])
def test_unknown_and_malformed_ids_are_friendly_404s(registry_server: RegistryServer,
                                                     path: str) -> None:
    with httpx.Client(base_url=registry_server.base_url, timeout=30) as ui:
        r = ui.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text[:300])
        if "/static/" not in path:
            assert "Not found" in _html(r, 404)


def test_unknown_versions_and_jobs_of_real_things(world: World) -> None:
    ui = world.ui(world.owner)
    for path in (f"/ui/adapters/{world.alpha}/versions/3",
                 f"/ui/adapters/{world.alpha}/versions/00",
                 "/ui/jobs/" + "0" * 32, "/ui/jobs/nope", "/ui/jobs/" + "z" * 200,
                 "/ui/jobs/%00", "/ui/jobs/x/outputs/y", "/ui/jobs/" + "0" * 32 + "/cancel"):
        r = ui.get(path)
        assert r.status_code == 404, (path, r.status_code)
        _html(r, 404)
    r = ui.get("/ui/jobs/" + "0" * 32 + "/progress.json")
    assert r.status_code == 404 and r.json() == {"error": "not found"}


def test_private_adapter_visibility(world: World) -> None:
    paths = [f"/ui/adapters/{world.secret}", f"/ui/adapters/{world.secret}/versions/1"]
    for who in (None, world.outsider):
        ui = world.ui(who)
        for path in paths:
            _html(ui.get(path), 404)
        assert world.secret not in ui.get("/ui/adapters").text
    ui = world.ui(world.member)
    for path in paths:
        assert world.secret in _html(ui.get(path))
    assert world.secret in ui.get("/ui/adapters").text
    # the API agrees, token for token
    for account, status in ((world.outsider, 404), (world.member, 200)):
        r = world.server.client(account.token).get(f"/adapters/{world.secret}")
        assert r.status_code == status


def test_private_lineage_is_not_shown_to_outsiders(world: World) -> None:
    from loreg.db.models import Lineage
    from tests.ui.conftest import _version_id

    with world.server.app.state.sessionmaker() as s:
        s.add(Lineage(child_version_id=_version_id(world.server, world.org, "secret", 1),
                      parent_version_id=_version_id(world.server, world.org, "alpha", 2),
                      position=0, weight=1.0, method="linear", params={}))
        s.commit()
    assert world.secret not in world.ui().get(f"/ui/adapters/{world.alpha}").text
    assert world.secret not in world.ui(world.outsider).get(f"/ui/adapters/{world.alpha}").text
    assert f"{world.secret}@1" in world.ui(world.member).get(f"/ui/adapters/{world.alpha}").text


def test_login_cookie_flags_and_logout(world: World) -> None:
    with httpx.Client(base_url=world.server.base_url, timeout=30) as ui:
        r = ui.post("/ui/login", data={"token": world.member.token, "next": "/ui/jobs"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/jobs"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        flags = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
        assert {"httponly", "path"} <= flags and "secure" not in flags  # plain http
        assert "samesite=lax" in cookie.lower() and "path=/ui" in cookie.lower()
        page = _html(ui.get("/ui/adapters"))
        assert world.member.name in page and "Sign out" in page
        # the cookie holds a random session id, never the token
        session_id = ui.cookies[COOKIE]
        assert session_id.startswith("lrs_") and world.member.token not in cookie
        # sign out needs the session's CSRF token
        r = ui.post("/ui/logout", data={"csrf": "forged"})
        assert r.status_code == 403
        assert world.member.name in ui.get("/ui/adapters").text
        r = ui.post("/ui/logout", data={"csrf": csrf_token(session_id)})
        assert r.status_code == 303
        assert f"{COOKIE}=" in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
        assert COOKIE not in ui.cookies
        assert "Sign in" in ui.get("/ui/adapters").text
    # signing out revoked the session on the server: a copy of the cookie is worthless
    with httpx.Client(base_url=world.server.base_url, timeout=30,
                      cookies={COOKIE: session_id}) as replay:
        r = replay.get("/ui/adapters")
        assert "Sign in" in _html(r) and world.member.name not in r.text
        assert replay.get(f"/ui/adapters/{world.secret}").status_code == 404
    # and the API token the browser signed in with still works for the API
    assert world.server.client(world.member.token).get("/whoami").status_code == 200
    # over https (as a TLS-terminating proxy on loopback reports it) the cookie is Secure
    r = httpx.post(world.server.url("/ui/login"), data={"token": world.member.token},
                   headers={"X-Forwarded-Proto": "https"}, timeout=30)
    assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()


def test_login_refusals(world: World) -> None:
    with httpx.Client(base_url=world.server.base_url, timeout=30) as ui:
        r = ui.post("/ui/login", data={"token": "lrg_not-a-token"})
        assert "not valid" in _html(r, 401) and "set-cookie" not in r.headers
        r = ui.post("/ui/login", data={"token": ""})
        assert r.status_code == 401
        r = ui.post("/ui/login", data={"token": world.member.token},
                    headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "set-cookie" not in r.headers
        r = ui.post("/ui/login", data={"token": world.member.token, "next": "//evil.example/"})
        assert r.headers["location"] == "/ui/adapters"
    # a cookie whose token was revoked signs the browser out (and is cleared)
    extra = world.server.make_token(world.owner, scope="read")
    with httpx.Client(base_url=world.server.base_url, timeout=30) as ui:
        assert ui.post("/ui/login", data={"token": extra.token}).status_code == 303
        r = world.server.client(world.owner.token).delete(f"/tokens/{extra.token_id}")
        assert r.status_code in (200, 204), r.text
        r = ui.get("/ui/adapters")
        assert "Sign in" in _html(r) and "Max-Age=0" in r.headers.get("set-cookie", "")


def test_jobs_pages_progress_and_cancel(world: World) -> None:
    job_id, worker = world.running_job(0.25, "exporting tensors")
    signed_out = world.ui()
    r = signed_out.get(f"/ui/jobs/{job_id}")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
    assert signed_out.get(f"/ui/jobs/{job_id}/progress.json").status_code == 401
    assert signed_out.get("/ui/jobs").status_code == 303

    owner = world.ui(world.owner)
    page = _html(owner.get(f"/ui/jobs/{job_id}"))
    assert 'aria-live="polite"' in page and 'value="25"' in page
    assert "exporting tensors" in page and 'http-equiv="refresh"' in page  # inside <noscript>
    assert "Cancel job" in page
    assert job_id[:12] in _html(owner.get("/ui/jobs"))
    world.progress(job_id, worker, 0.6, "writing files")
    doc = owner.get(f"/ui/jobs/{job_id}/progress.json").json()
    assert doc["percent"] == 60 and doc["message"] == "writing files" and not doc["terminal"]

    # a member who may see the job (it reads a public adapter) may not cancel it
    member = world.ui(world.member)
    page = _html(member.get(f"/ui/jobs/{job_id}"))
    assert "Cancel job" not in page
    r = member.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf_token(member.cookies[COOKIE])})
    assert r.status_code == 403
    # the submitter may, with the form's token only
    r = owner.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": "forged"})
    assert r.status_code == 403
    r = owner.post(f"/ui/jobs/{job_id}/cancel", data={"csrf": csrf_token(owner.cookies[COOKIE])})
    assert r.status_code == 303
    doc = owner.get(f"/ui/jobs/{job_id}/progress.json").json()
    assert doc["cancel_requested"] is True
    assert "cancellation requested" in owner.get(f"/ui/jobs/{job_id}").text


def test_finished_job_outputs_download(world: World) -> None:
    r = world.server.client(world.owner.token).post(
        "/jobs", json={"type": "export", "params": {"adapter": world.secret}})
    assert r.status_code in (200, 201), r.text
    job_id = r.json()["id"]
    from loreg.worker.loop import Worker

    worker = Worker(world.server.settings, sessions=world.server.app.state.sessionmaker,
                    store=world.server.app.state.store, types=["export"], device="cpu")
    try:
        assert worker.run(once=True) == 1
    finally:
        worker.close()
    owner = world.ui(world.owner)
    page = _html(owner.get(f"/ui/jobs/{job_id}"))
    assert "succeeded" in page and "Cancel job" not in page and "refresh" not in page
    links = re.findall(rf'href="(/ui/jobs/{job_id}/outputs/[^"]+)"', page)
    assert links, page
    for link in links:
        r = owner.get(link, follow_redirects=True)
        assert r.status_code == 200 and r.content
    assert owner.get(f"/ui/jobs/{job_id}/outputs/nope.bin").status_code == 404
    # a private input: the outsider may not see the job; signed out, sign in first
    assert world.ui(world.outsider).get(links[0]).status_code == 404
    assert world.ui(world.outsider).get(f"/ui/jobs/{job_id}").status_code == 404
    assert world.ui().get(links[0]).status_code == 303
