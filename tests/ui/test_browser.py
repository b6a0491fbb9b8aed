"""The UI in real headless Chromium (Debian's ``chromium``, driven by Playwright): sign in,
find an adapter by a filter, open it, see its versions and lineage, watch a running job's
progress change, sign out; a private adapter stays out of reach signed out and for a
non-member. Screenshots of the main pages go to ``artifacts/screenshots/``.

Runs on the embedded backend only (the pages are backend-agnostic; ``test_routes`` covers
both). Without ``/usr/bin/chromium`` they fail (saying what to install), never skip.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.factories.cards import HOSTILE_CARD, push_with_card
from tests.factories.ui_world import World

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(params=["sqlite+local"])
def registry_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need it (Debian: apt-get install chromium)",
            pytrace=False,
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(15_000)
    try:
        yield p
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, world: World, token: str) -> None:
    page.goto(world.server.url("/ui/adapters"))
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/ui/adapters"))


def test_browse_sign_in_filter_lineage_job_progress_sign_out(world: World, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(world.server.url("/ui/adapters"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Adapters")
    shot(page, "adapters-signed-out")

    sign_in(page, world, world.owner.token)
    expect(page.get_by_test_id("whoami")).to_have_text(world.owner.name)
    # the session cookie as the browser holds it
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "loreg_ui"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/ui"
    assert page.evaluate("document.cookie") == ""  # not readable by scripts

    # find an adapter by a filter
    page.get_by_label("Namespace").fill(world.org)
    page.get_by_label("Rank min").fill("8")
    page.get_by_role("button", name="Search").click()
    table = page.locator("table.data")
    expect(table.get_by_role("link", name=world.beta)).to_be_visible()
    expect(table.get_by_role("link", name=world.alpha)).to_have_count(0)
    page.get_by_label("Rank min").fill("")
    page.get_by_label("Label").fill("dataset=mix")
    page.get_by_role("button", name="Search").click()
    expect(table.get_by_role("link", name=world.gamma)).to_be_visible()
    expect(table.get_by_role("link", name=world.beta)).to_have_count(0)
    shot(page, "adapters-filtered")

    # open it: versions, pull command, lineage graph with parents' weights and method
    table.get_by_role("link", name=world.gamma).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(world.gamma)
    versions = page.get_by_test_id("versions")
    expect(versions.get_by_role("link", name="v1")).to_be_visible()
    expect(page.locator("#pull-cmd")).to_have_text(f"loreg pull {world.gamma}:latest")
    graph = page.locator("svg.lineage")
    expect(graph).to_be_visible()
    expect(graph).to_contain_text(f"{world.alpha}@2")
    expect(graph).to_contain_text("w=0.7 · ties")
    expect(graph).to_contain_text("w=0.3 · ties")
    shot(page, "adapter-combined")
    graph.screenshot(path=str(SCREENSHOTS / "lineage-graph.png"))

    # follow the graph to a parent: two versions, gamma as its child
    graph.locator("a", has_text=f"{world.alpha}@2").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{world.alpha} v2")
    expect(page.locator("svg.heatmap")).to_be_visible()
    expect(page.get_by_test_id("norms").locator("tbody tr")).to_have_count(8)
    expect(page.locator("svg.lineage")).to_contain_text(f"{world.gamma}@1")
    shot(page, "version-modules")
    page.locator("svg.heatmap").screenshot(path=str(SCREENSHOTS / "module-heatmap.png"))
    page.get_by_role("link", name="alpha", exact=True).click()
    expect(page.get_by_test_id("versions").locator("tbody tr")).to_have_count(2)
    shot(page, "adapter-parent")
    page.get_by_role("link", name=world.base).first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(world.base)
    shot(page, "base-model")

    # a running job's progress changes while the page is open (nothing started from the UI)
    job_id, worker = world.running_job(0.2, "downloading adapter")
    page.goto(world.server.url(f"/ui/jobs/{job_id}"))
    expect(page.locator("#job-percent")).to_have_text("20%")
    expect(page.locator("#job-live")).to_have_attribute("aria-live", "polite")
    shot(page, "job-running")
    world.progress(job_id, worker, 0.65, "writing tensors")
    expect(page.locator("#job-percent")).to_have_text("65%", timeout=10_000)
    expect(page.locator("#job-message")).to_have_text("writing tensors")
    assert page.locator("#job-progress").evaluate("e => e.value") == 65
    world.progress(job_id, worker, 0.9, "almost done")
    expect(page.locator("#job-percent")).to_have_text("90%", timeout=10_000)
    shot(page, "job-progress")
    page.goto(world.server.url("/ui/jobs"))
    expect(page.get_by_role("link", name=job_id[:12])).to_be_visible()
    shot(page, "jobs")

    # sign out
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "loreg_ui"]
    page.goto(world.server.url(f"/ui/jobs/{job_id}"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")


def test_private_adapter_unreachable_signed_out_and_for_non_members(
    world: World, page: Any
) -> None:
    from playwright.sync_api import expect

    url = world.server.url(f"/ui/adapters/{world.secret}")
    response = page.goto(url)
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    shot(page, "not-found")
    page.goto(world.server.url("/ui/adapters"))
    expect(page.get_by_role("link", name=world.secret)).to_have_count(0)

    sign_in(page, world, world.outsider.token)
    response = page.goto(url)
    assert response is not None and response.status == 404
    page.goto(world.server.url(f"/ui/adapters?namespace={world.org}"))
    expect(page.get_by_role("link", name=world.alpha)).to_be_visible()
    expect(page.get_by_role("link", name=world.secret)).to_have_count(0)
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, world, world.member.token)
    response = page.goto(url)
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", level=1)).to_contain_text(world.secret)
    expect(page.locator("h1 .badge")).to_have_text("private")
    shot(page, "adapter-private-member")


def test_pages_read_without_javascript(world: World, browser: Any) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(world.server.url(f"/ui/adapters/{world.alpha}"))
        expect(page.locator("#pull-cmd")).to_have_text(f"loreg pull {world.alpha}:latest")
        expect(page.get_by_role("button", name="Copy")).to_have_count(0)  # JS-only
        expect(page.locator("svg.lineage")).to_be_visible()
        page.get_by_role("link", name="Skip to content").focus()
        expect(page.get_by_role("link", name="Skip to content")).to_be_visible()
    finally:
        context.close()


def test_model_card_and_version_comparison(world: World, page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    client = world.server.client(world.owner.token)
    target = f"{world.org}/carded"
    r = push_with_card(
        client, world.models.adapter.path, tmp_path, target, world.base, HOSTILE_CARD
    )
    assert r.status_code == 201, r.text

    # the model card: rendered Markdown, and none of its HTML ran or loaded anything
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(world.server.url(f"/ui/adapters/{target}"))
    card = page.get_by_test_id("model-card")
    expect(card.get_by_role("heading", name="Support bot")).to_be_visible()
    expect(card.get_by_role("link", name="the run")).to_have_attribute(
        "href", "https://ci.example.com/runs/42"
    )
    expect(card.locator("table td", has_text="0.91")).to_be_visible()
    expect(card.locator("script, img, iframe")).to_have_count(0)
    expect(card).to_contain_text("<script>window.pwned = 1</script>")  # shown as text
    assert page.evaluate("typeof window.pwned") == "undefined"
    expect(card.get_by_role("link", name="click")).to_have_count(0)  # javascript: dropped
    assert not [u for u in requests if "tracker.example" in u or "ci.example" in u]
    shot(page, "model-card")

    # the comparison page from the adapter page: v1 against v2 side by side
    page.goto(world.server.url(f"/ui/adapters/{world.alpha}"))
    page.get_by_test_id("compare-link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Compare versions of {world.alpha}")
    norms = page.get_by_test_id("norms")
    expect(norms.locator("thead th")).to_have_text(["Module", "v1", "v2", "v2 / v1"])
    expect(norms.locator("tbody tr")).to_have_count(8)
    expect(norms.locator("tbody tr.differs").first).to_be_visible()
    expect(page.get_by_test_id("facts").get_by_role("row", name="rank 4 4")).to_be_visible()
    expect(page.get_by_test_id("targets").locator("tbody tr")).to_have_count(4)
    expect(page.get_by_test_id("labels")).to_contain_text("alpaca")
    shot(page, "compare-versions")
    # swap the two with the form
    page.get_by_label("From").select_option("2")
    page.get_by_label("to").select_option("1")
    page.get_by_role("button", name="Compare").click()
    expect(norms.locator("thead th")).to_have_text(["Module", "v2", "v1", "v1 / v2"])


def test_api_docs_work_with_no_network(world: World, browser: Any) -> None:
    """``/docs`` in a browser that may reach nothing but the registry: Swagger UI loads,
    renders every operation and asks for nothing elsewhere."""
    from playwright.sync_api import expect

    own = world.server.base_url
    elsewhere: list[str] = []

    def only_the_registry(route: Any) -> None:
        if route.request.url.startswith(own):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        context.route("**/*", only_the_registry)
        page = context.new_page()
        page.goto(world.server.url("/docs"))
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("loreg")
        expect(page.locator(".opblock").first).to_be_visible(timeout=20_000)
        assert page.locator(".opblock").count() >= 45
        expect(page.locator("#operations-tag-versions")).to_contain_text(
            "Push a version from uploaded blobs"
        )  # the tag's description
        page.locator(".opblock", has_text="/api/v1/adapters/{namespace}/{name}/versions").filter(
            has_text="Push a version"
        ).first.click()
        expect(page.get_by_text("Three files, a tag and labels").first).to_be_attached()
        shot(page, "api-docs")
        assert elsewhere == [], elsewhere
        # and / leads to the web page
        page.goto(own + "/")
        assert page.url.endswith("/ui/") and "Adapters" in page.title()
    finally:
        context.close()
