"""The adapter pages: the searchable list, one adapter, one version, two versions compared."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.exc import DataError

from loreg.api.deps import SessionDep, StoreDep
from loreg.db.models import AdapterVersion, Visibility
from loreg.errors import InvalidInput, LoregError, NotFound
from loreg.services import adapters as svc
from loreg.services import lineage
from loreg.services.pagination import Page
from loreg.services.permissions import Principal
from loreg.storage import BlobStore
from loreg.ui import charts
from loreg.ui.compare import compare_versions
from loreg.ui.formatting import human_size
from loreg.ui.markdown import MAX_CARD_BYTES, card_file, render_card
from loreg.ui.params import PAGE_SIZE, Text, opt, version_number, whole_number
from loreg.ui.rendering import friendly, not_found, render
from loreg.ui.session import UiActor

log = logging.getLogger("loreg.ui")

router = APIRouter(include_in_schema=False)


@router.get("/")
@router.get("/adapters")
def adapter_list(
    request: Request,
    session: SessionDep,
    actor: UiActor,
    namespace: Text = None,
    base: Text = None,
    target: Text = None,
    rank_min: Text = None,
    rank_max: Text = None,
    text: Text = None,
    cursor: Text = None,
    label: Annotated[list[str] | None, Query(max_length=600)] = None,
) -> Response:
    form = {
        "namespace": namespace or "",
        "base": base or "",
        "target": target or "",
        "rank_min": rank_min or "",
        "rank_max": rank_max or "",
        "text": text or "",
        "label": "; ".join(label or []),
    }
    labels = [p.strip() for item in (label or []) for p in item.split(";") if p.strip()]
    page: Page[svc.AdapterSummary] = Page([], None)
    error = None
    try:
        filters = svc.SearchFilters(
            namespace=opt(namespace),
            base=opt(base),
            target=opt(target),
            rank_min=whole_number(rank_min, "rank_min"),
            rank_max=whole_number(rank_max, "rank_max"),
            labels=labels,
            text=opt(text),
        )
        page = svc.search(session, actor, filters, cursor=opt(cursor), limit=PAGE_SIZE)
    except InvalidInput as exc:
        error = exc.message
    except DataError:
        session.rollback()
        error = "a filter value cannot be searched for"
    params = [(k, v) for k, v in form.items() if v and k != "label"]
    params += [("label", lab) for lab in labels]
    next_url = (
        "/ui/adapters?" + urlencode([*params, ("cursor", page.next_cursor)])
        if page.next_cursor
        else None
    )
    first_url = ("/ui/adapters?" + urlencode(params)) if cursor else None
    rows = [summary_row(s) for s in page.items]
    filtered = any(v for v in form.values())
    return render(
        request,
        "adapters.html",
        {
            "form": form,
            "rows": rows,
            "error": error,
            "next_url": next_url,
            "first_url": first_url,
            "filtered": filtered,
        },
        status=400 if error else 200,
    )


def summary_row(s: svc.AdapterSummary) -> dict[str, Any]:
    a, v = s.adapter, s.latest
    return {
        "ns": a.namespace.name,
        "name": a.name,
        "public": a.visibility == Visibility.PUBLIC.value,
        "description": a.description,
        "versions": s.versions_count,
        "latest": v.number if v else None,
        "r": v.r if v else None,
        "base": v.base_model.name if v is not None and v.base_model is not None else None,
        "targets": v.target_modules if v else None,
        "state": v.validation_state if v else None,
        "tags": sorted(s.tags.items()),
        "updated": a.updated_at,
    }


def _version_row(
    v: AdapterVersion, users: dict[int, str], tags: dict[int, list[str]]
) -> dict[str, Any]:
    return {
        "number": v.number,
        "digest": v.digest,
        "created_by": users.get(v.created_by or -1),
        "created_at": v.created_at,
        "size": sum(f.size for f in v.files) or v.size_bytes,
        "r": v.r,
        "alpha": v.lora_alpha,
        "targets": v.target_modules,
        "state": v.validation_state,
        "tags": tags.get(v.id, []),
    }


def _lineage(session: Any, actor: Principal | None, v: AdapterVersion) -> dict[str, Any]:
    parents, hidden_parents = lineage.parents(session, actor, v)
    children, hidden_children = lineage.children(session, actor, v)

    def node(e: lineage.Edge) -> charts.Node:
        other = e.version
        ref = svc.version_ref(other)
        href = (
            f"/ui/adapters/{other.adapter.namespace.name}/{other.adapter.name}"
            f"/versions/{other.number}"
        )
        return charts.Node(ref, href, f"w={e.weight:g} · {e.method}")

    pnodes = [node(e) for e in parents]
    cnodes = [node(e) for e in children]
    svg = (
        charts.lineage_svg(pnodes, charts.Node(svc.version_ref(v), None), cnodes)
        if pnodes or cnodes
        else None
    )
    return {
        "parents": pnodes,
        "children": cnodes,
        "svg": svg,
        "hidden_parents": hidden_parents,
        "hidden_children": hidden_children,
        "method": parents[0].method if parents else None,
    }


def _report(v: AdapterVersion) -> dict[str, Any] | None:
    report = v.validation_report
    if not isinstance(report, dict):
        return None
    problems = [p for p in report.get("problems") or [] if isinstance(p, dict)]
    modules = report.get("modules") if isinstance(report.get("modules"), dict) else {}
    return {
        "state": report.get("state", v.validation_state),
        "problems": problems,
        "modules": len(modules or {}),
        "job_id": report.get("job_id"),
        "raw": report,
    }


@router.get("/adapters/{ns}/{name}")
@friendly("adapter")
def adapter_page(
    request: Request,
    ns: str,
    name: str,
    session: SessionDep,
    actor: UiActor,
    store: StoreDep,
    vcursor: Text = None,
) -> Response:
    adapter = svc.get_adapter(session, actor, ns, name)
    try:
        versions = svc.list_versions(session, actor, ns, name, cursor=opt(vcursor), limit=PAGE_SIZE)
    except InvalidInput:
        versions = svc.list_versions(session, actor, ns, name, limit=PAGE_SIZE)
    tags = svc.list_tags(session, actor, ns, name)
    by_version: dict[int, list[str]] = {}
    for t in tags:
        by_version.setdefault(t.version_id, []).append(t.name)
    users = svc.user_names(session, [v.created_by for v in versions.items])
    current: AdapterVersion | None
    try:
        current = svc.resolve(session, actor, f"{adapter.namespace.name}/{adapter.name}")
    except NotFound:
        current = None
    full = f"{adapter.namespace.name}/{adapter.name}"
    pull_tag = "latest"
    if current is not None:
        names = [t.name for t in tags if t.version_id == current.id]
        pull_tag = "latest" if "latest" in names or not names else names[0]
    return render(
        request,
        "adapter.html",
        {
            "adapter": adapter,
            "full": full,
            "ns": adapter.namespace.name,
            "name": adapter.name,
            "public": adapter.visibility == Visibility.PUBLIC.value,
            "versions": [_version_row(v, users, by_version) for v in versions.items],
            "next_versions": (
                f"/ui/adapters/{full}?vcursor={versions.next_cursor}"
                if versions.next_cursor
                else None
            ),
            "tags": [(t.name, t.version.number, t.protected) for t in tags],
            "current": current,
            "pull": f"loreg pull {full}:{pull_tag}" if current is not None else None,
            "lineage": _lineage(session, actor, current) if current is not None else None,
            "report": _report(current) if current is not None else None,
            "card": _model_card(store, current) if current is not None else None,
            "title": full,
        },
    )


@router.get("/adapters/{ns}/{name}/versions/{n}")
@friendly("version")
def version_page(
    request: Request,
    ns: str,
    name: str,
    n: str,
    session: SessionDep,
    actor: UiActor,
    store: StoreDep,
) -> Response:
    if not n.isascii() or not n.isdigit() or len(n) > 9 or int(n) < 1:
        return not_found(request, "version")
    v = svc.get_version(session, actor, ns, name, str(int(n)))
    full = f"{v.adapter.namespace.name}/{v.adapter.name}"
    users = svc.user_names(session, [v.created_by])
    tags = svc.tags_of(session, v)
    report = _report(v)
    grid = None
    if report is not None and isinstance(report["raw"].get("modules"), dict):
        grid = charts.norm_grid(report["raw"]["modules"])
    chart = (
        charts.heatmap_svg(
            grid, f"Delta-weight norm of each module of {full}@{v.number}, by module type and layer"
        )
        if grid
        else None
    )
    return render(
        request,
        "version.html",
        {
            "v": v,
            "full": full,
            "ns": v.adapter.namespace.name,
            "name": v.adapter.name,
            "row": _version_row(v, users, {v.id: tags}),
            "tags": tags,
            "pull": f"loreg pull {full}@{v.number}",
            "report": report,
            "grid": grid,
            "chart": chart,
            "fmt_norm": charts.fmt_norm,
            "lineage": _lineage(session, actor, v),
            "card": _model_card(store, v),
            "title": f"{full}@{v.number}",
        },
    )


def _model_card(store: BlobStore, v: AdapterVersion) -> dict[str, Any] | None:
    """The version's README.md rendered (sanitised), or why it is not shown."""
    by_path = {f.path: f for f in v.files}
    name = card_file(list(by_path))
    if name is None:
        return None
    f = by_path[name]
    if f.size > MAX_CARD_BYTES:
        return {
            "path": name,
            "html": None,
            "note": f"{name} is {human_size(f.size)}: too large to show here.",
        }
    try:
        text = store.read_range(f.blob_digest, 0, f.size).decode("utf-8", errors="replace")
    except (LoregError, OSError) as exc:
        log.warning("model card of %s unreadable: %s", svc.version_ref(v), exc)
        return {"path": name, "html": None, "note": f"{name} cannot be read right now."}
    card = render_card(text)
    return {"path": name, "html": card.html, "metadata": card.metadata, "note": None}


@router.get("/adapters/{ns}/{name}/compare")
@friendly("version")
def compare_page(
    request: Request,
    ns: str,
    name: str,
    session: SessionDep,
    actor: UiActor,
    a: Text = None,
    b: Text = None,
) -> Response:
    adapter = svc.get_adapter(session, actor, ns, name)
    full = f"{adapter.namespace.name}/{adapter.name}"
    numbers = [v.number for v in svc.list_versions(session, actor, ns, name, limit=200).items]
    left, right = version_number(a), version_number(b)
    if right is None:
        right = numbers[0] if numbers else None
    if left is None and right is not None:
        older = [n for n in numbers if n < right]
        left = older[0] if older else None
    ctx: dict[str, Any] = {
        "full": full,
        "ns": adapter.namespace.name,
        "name": adapter.name,
        "numbers": numbers,
        "a": left,
        "b": right,
        "title": f"Compare versions of {full}",
    }
    if left is None or right is None:
        return render(request, "compare.html", {**ctx, "cmp": None})
    va = svc.get_version(session, actor, ns, name, str(left))
    vb = svc.get_version(session, actor, ns, name, str(right))
    return render(
        request,
        "compare.html",
        {
            **ctx,
            "cmp": compare_versions(va, vb),
            "va": va,
            "vb": vb,
            "title": f"{full}: v{left} vs v{right}",
        },
    )
