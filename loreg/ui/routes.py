"""``/ui``: server-rendered pages over the same services the API calls.

Auth. ``POST /ui/login`` checks a pasted API token with ``loreg.api.deps.authenticate_token``
(as the API checks a Bearer token) and starts a server-side session
(``loreg.services.ui_sessions``): the ``loreg_ui`` cookie holds a random session id, never
the token. The cookie is ``HttpOnly``, ``SameSite=Lax``, ``Path=/ui``, and ``Secure`` when
the request came over https (``request.url.scheme``; behind a TLS-terminating proxy, run
uvicorn with ``--proxy-headers`` so the scheme is right). On plain ``http://127.0.0.1`` a
Secure cookie would not be sent back by browsers, hence the scheme test. Every request looks
the session up and re-checks its token, so signing out, or a revoked or expired token, signs
the browser out at once; the actor is then passed to the same service functions as the
API's, so what a page shows is exactly what the API would answer to that token.

CSRF. Forms that change state (sign out, cancel a job) carry ``csrf``: an HMAC-SHA256 of
a fixed label keyed by the session cookie's value, which another site can neither read
(HttpOnly, same-origin policy) nor compute. State-changing POSTs also refuse a foreign
``Origin`` header, and the Lax cookie is not sent on cross-site POSTs at all.

Errors. No page answers 500 for a malformed or unknown id: lookups that fail (missing,
hidden, or not even a valid name) render the friendly 404 page; other domain errors
render an error page with the status the API would use (``loreg.api.errors``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import DataError
from starlette.templating import Jinja2Templates

from loreg.api.deps import (
    SessionDep,
    SettingsDep,
    StoreDep,
    authenticate_token,
    get_request_id,
    get_sessionmaker,
    note_use,
)
from loreg.api.errors import status_for
from loreg.api.streaming import iter_file
from loreg.db.models import AdapterVersion, Job, JobStatus, Visibility
from loreg.errors import InvalidInput, LoregError, NotFound, Unauthenticated
from loreg.services import adapters as svc
from loreg.services import bases, jobs, lineage, quotas, ui_sessions
from loreg.services.pagination import Page
from loreg.services.permissions import Principal
from loreg.storage import BlobStore
from loreg.ui import charts
from loreg.ui.markdown import MAX_CARD_BYTES, card_file, render_card

log = logging.getLogger("loreg.ui")

DASH = "\N{EN DASH}"  # shown for an empty value
TIMES = "\N{MULTIPLICATION SIGN}"

COOKIE = "loreg_ui"
COOKIE_PATH = "/ui"
PAGE_SIZE = 25
MAX_FORM_BYTES = 16 * 1024
_CSRF_LABEL = b"loreg-ui-csrf-v1"
_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"
STATIC_TYPES = {"style.css": "text/css; charset=utf-8", "ui.js": "text/javascript; charset=utf-8"}

router = APIRouter(include_in_schema=False)


# --------------------------------------------------------------------------- formatting


def human_size(n: int | None) -> str:
    return DASH if n is None else quotas.format_bytes(n)


def human_count(n: int | None) -> str:
    if n is None:
        return DASH
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def when(value: datetime | None) -> str:
    if value is None:
        return DASH
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def short_digest(digest: str | None) -> str:
    if not digest:
        return DASH
    return digest.removeprefix("sha256:")[:12]


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def targets_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value) if value is not None else DASH


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(_HERE / "templates")),
                      autoescape=select_autoescape(["html", "xml"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(size=human_size, count=human_count, when=when, short=short_digest,
                       pretty=pretty_json, targets=targets_text, q=lambda s: quote(str(s)))
    return env


templates = Jinja2Templates(env=_environment())


# --------------------------------------------------------------------------- session


def csrf_token(cookie_value: str) -> str:
    """The form token of a session: HMAC-SHA256(key=cookie value, msg=fixed label)."""
    return hmac.new(cookie_value.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def ui_actor(request: Request) -> Principal | None:
    """The signed-in principal from the cookie, or ``None`` (a bad cookie signs out)."""
    request.state.ui_actor = None
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    try:
        principal = _session_principal(request, value)
    except LoregError:
        request.state.ui_clear_cookie = True
        return None
    request.state.ui_actor = principal
    return principal


def _session_principal(request: Request, value: str) -> Principal:
    """The principal of the cookie's session, in its own short read; the token's last use
    is noted like a Bearer request's (written off the request path)."""
    with get_sessionmaker(request)() as session:
        principal = ui_sessions.authenticate(session, value)
    note_use(request, principal)
    return principal.with_request_id(get_request_id(request) or None)


UiActor = Annotated[Principal | None, Depends(ui_actor)]


async def form_data(request: Request) -> dict[str, str]:
    """A small urlencoded form body (first value of each field)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidInput("form too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("invalid form") from None
    return {k: v[0] for k, v in parsed.items()}


FormDep = Annotated[dict[str, str], Depends(form_data)]


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/adapters"


# --------------------------------------------------------------------------- rendering


def render(request: Request, template: str, context: dict[str, Any] | None = None,
           status: int = 200) -> Response:
    actor: Principal | None = getattr(request.state, "ui_actor", None)
    cookie = request.cookies.get(COOKIE)
    ctx: dict[str, Any] = {
        "actor": actor,
        "csrf": csrf_token(cookie) if cookie and actor else "",
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **(context or {}),
    }
    response = templates.TemplateResponse(request, template, ctx, status_code=status)
    return _finish(request, response)


def _finish(request: Request, response: Response) -> Response:
    if getattr(request.state, "ui_clear_cookie", False):
        response.delete_cookie(COOKIE, path=COOKIE_PATH)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    return render(request, "error.html", {"title": title, "message": message,
                                          "status": status}, status=status)


def not_found(request: Request, what: str = "page") -> Response:
    return error_page(request, 404, "Not found",
                      f"There is no {what} here, or you are not allowed to see it.")


def login_redirect(request: Request) -> Response:
    target = "/ui/login?" + urlencode({"next": request.url.path})
    return _finish(request, RedirectResponse(target, status_code=303))


P = ParamSpec("P")
R = TypeVar("R")


def friendly(what: str) -> Callable[[Callable[P, Response]], Callable[P, Response]]:
    """Turn domain errors of a page into pages: lookups -> 404, sign-in needed -> login."""

    def wrap(fn: Callable[P, Response]) -> Callable[P, Response]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> Response:
            request = kwargs["request"]
            assert isinstance(request, Request)
            try:
                return fn(*args, **kwargs)
            except Unauthenticated:
                return login_redirect(request)
            except (NotFound, InvalidInput):
                return not_found(request, what)
            except LoregError as exc:
                return error_page(request, status_for(exc), "Not possible", exc.message)
            except DataError:
                return not_found(request, what)
        return inner

    return wrap


# --------------------------------------------------------------------------- static, auth


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in STATIC_TYPES:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response((STATIC_DIR / name).read_bytes(), media_type=STATIC_TYPES[name],
                    headers={"Cache-Control": "public, max-age=300"})


@router.get("/login")
def login_form(request: Request, actor: UiActor,
               next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
def login(request: Request, form: FormDep, settings: SettingsDep) -> Response:
    request.state.ui_actor = None
    target = _safe_next(form.get("next"))
    if not _same_origin(request):
        return error_page(request, 403, "Forbidden", "This form must be sent from this site.")
    token = form.get("token", "").strip()
    try:
        if not token:
            raise Unauthenticated("paste an API token")
        principal = authenticate_token(request, token)
    except LoregError:
        ctx = {"next": target, "error": "That token is not valid (unknown, expired or revoked)."}
        return render(request, "login.html", ctx, status=401)
    lifetime = timedelta(hours=settings.ui_session_hours)
    with get_sessionmaker(request)() as session:
        session_id = ui_sessions.start(session, principal, lifetime=lifetime)
        session.commit()
    log.info("ui sign-in by %s", principal.username)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, session_id, max_age=int(lifetime.total_seconds()),
                        path=COOKIE_PATH, secure=request.url.scheme == "https", httponly=True,
                        samesite="lax")
    return _finish(request, response)


@router.post("/logout")
def logout(request: Request, form: FormDep) -> Response:
    cookie = request.cookies.get(COOKIE)
    if cookie and (not _same_origin(request)
                   or not hmac.compare_digest(form.get("csrf", ""), csrf_token(cookie))):
        return error_page(request, 403, "Forbidden", "The sign-out form has expired; reload "
                          "the page and try again.")
    if cookie:
        with get_sessionmaker(request)() as session:
            ui_sessions.end(session, cookie)
            session.commit()
    response = RedirectResponse("/ui/adapters", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=request.url.scheme == "https",
                           httponly=True, samesite="lax")
    return _finish(request, response)


# --------------------------------------------------------------------------- adapters


def _opt(value: str | None) -> str | None:
    value = value.strip() if value is not None else None
    return value or None


def _rank(value: str | None, field: str) -> int | None:
    value = _opt(value)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise InvalidInput(f"{field} must be a whole number", details={"field": field})
    return int(value)


Text = Annotated[str | None, Query(max_length=1000)]


@router.get("/")
@router.get("/adapters")
def adapter_list(
    request: Request, session: SessionDep, actor: UiActor,
    namespace: Text = None, base: Text = None, target: Text = None,
    rank_min: Text = None, rank_max: Text = None, text: Text = None, cursor: Text = None,
    label: Annotated[list[str] | None, Query(max_length=600)] = None,
) -> Response:
    form = {"namespace": namespace or "", "base": base or "", "target": target or "",
            "rank_min": rank_min or "", "rank_max": rank_max or "", "text": text or "",
            "label": "; ".join(label or [])}
    labels = [p.strip() for item in (label or []) for p in item.split(";") if p.strip()]
    page: Page[svc.AdapterSummary] = Page([], None)
    error = None
    try:
        filters = svc.SearchFilters(
            namespace=_opt(namespace), base=_opt(base), target=_opt(target),
            rank_min=_rank(rank_min, "rank_min"), rank_max=_rank(rank_max, "rank_max"),
            labels=labels, text=_opt(text))
        page = svc.search(session, actor, filters, cursor=_opt(cursor), limit=PAGE_SIZE)
    except InvalidInput as exc:
        error = exc.message
    except DataError:
        session.rollback()
        error = "a filter value cannot be searched for"
    params = [(k, v) for k, v in form.items() if v and k != "label"]
    params += [("label", lab) for lab in labels]
    next_url = ("/ui/adapters?" + urlencode([*params, ("cursor", page.next_cursor)])
                if page.next_cursor else None)
    first_url = ("/ui/adapters?" + urlencode(params)) if cursor else None
    rows = [_summary_row(s) for s in page.items]
    filtered = any(v for v in form.values())
    return render(request, "adapters.html", {
        "form": form, "rows": rows, "error": error, "next_url": next_url,
        "first_url": first_url, "filtered": filtered,
    }, status=400 if error else 200)


def _summary_row(s: svc.AdapterSummary) -> dict[str, Any]:
    a, v = s.adapter, s.latest
    return {
        "ns": a.namespace.name, "name": a.name, "public": a.visibility == Visibility.PUBLIC.value,
        "description": a.description, "versions": s.versions_count,
        "latest": v.number if v else None, "r": v.r if v else None,
        "base": v.base_model.name if v is not None and v.base_model is not None else None,
        "targets": v.target_modules if v else None,
        "state": v.validation_state if v else None,
        "tags": sorted(s.tags.items()), "updated": a.updated_at,
    }


def _version_row(v: AdapterVersion, users: dict[int, str], tags: dict[int, list[str]]
                 ) -> dict[str, Any]:
    return {
        "number": v.number, "digest": v.digest, "created_by": users.get(v.created_by or -1),
        "created_at": v.created_at, "size": sum(f.size for f in v.files) or v.size_bytes,
        "r": v.r, "alpha": v.lora_alpha, "targets": v.target_modules,
        "state": v.validation_state, "tags": tags.get(v.id, []),
    }


def _lineage(session: Any, actor: Principal | None, v: AdapterVersion) -> dict[str, Any]:
    parents, hidden_parents = lineage.parents(session, actor, v)
    children, hidden_children = lineage.children(session, actor, v)

    def node(e: lineage.Edge) -> charts.Node:
        other = e.version
        ref = svc.version_ref(other)
        href = (f"/ui/adapters/{other.adapter.namespace.name}/{other.adapter.name}"
                f"/versions/{other.number}")
        return charts.Node(ref, href, f"w={e.weight:g} · {e.method}")

    pnodes = [node(e) for e in parents]
    cnodes = [node(e) for e in children]
    svg = (charts.lineage_svg(pnodes, charts.Node(svc.version_ref(v), None), cnodes)
           if pnodes or cnodes else None)
    return {"parents": pnodes, "children": cnodes, "svg": svg,
            "hidden_parents": hidden_parents, "hidden_children": hidden_children,
            "method": parents[0].method if parents else None}


def _report(v: AdapterVersion) -> dict[str, Any] | None:
    report = v.validation_report
    if not isinstance(report, dict):
        return None
    problems = [p for p in report.get("problems") or [] if isinstance(p, dict)]
    modules = report.get("modules") if isinstance(report.get("modules"), dict) else {}
    return {"state": report.get("state", v.validation_state), "problems": problems,
            "modules": len(modules or {}), "job_id": report.get("job_id"),
            "raw": report}


@router.get("/adapters/{ns}/{name}")
@friendly("adapter")
def adapter_page(
    request: Request, ns: str, name: str, session: SessionDep, actor: UiActor,
    store: StoreDep, vcursor: Text = None,
) -> Response:
    adapter = svc.get_adapter(session, actor, ns, name)
    try:
        versions = svc.list_versions(session, actor, ns, name, cursor=_opt(vcursor),
                                     limit=PAGE_SIZE)
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
    return render(request, "adapter.html", {
        "adapter": adapter, "full": full, "ns": adapter.namespace.name, "name": adapter.name,
        "public": adapter.visibility == Visibility.PUBLIC.value,
        "versions": [_version_row(v, users, by_version) for v in versions.items],
        "next_versions": (f"/ui/adapters/{full}?vcursor={versions.next_cursor}"
                          if versions.next_cursor else None),
        "tags": [(t.name, t.version.number, t.protected) for t in tags],
        "current": current,
        "pull": f"loreg pull {full}:{pull_tag}" if current is not None else None,
        "lineage": _lineage(session, actor, current) if current is not None else None,
        "report": _report(current) if current is not None else None,
        "card": _model_card(store, current) if current is not None else None,
        "title": full,
    })


@router.get("/adapters/{ns}/{name}/versions/{n}")
@friendly("version")
def version_page(request: Request, ns: str, name: str, n: str, session: SessionDep,
                 actor: UiActor, store: StoreDep) -> Response:
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
    chart = (charts.heatmap_svg(grid, f"Delta-weight norm of each module of {full}@{v.number}, "
                                      f"by module type and layer") if grid else None)
    return render(request, "version.html", {
        "v": v, "full": full, "ns": v.adapter.namespace.name, "name": v.adapter.name,
        "row": _version_row(v, users, {v.id: tags}), "tags": tags,
        "pull": f"loreg pull {full}@{v.number}", "report": report, "grid": grid,
        "chart": chart, "fmt_norm": charts.fmt_norm, "lineage": _lineage(session, actor, v),
        "card": _model_card(store, v), "title": f"{full}@{v.number}",
    })


def _model_card(store: BlobStore, v: AdapterVersion) -> dict[str, Any] | None:
    """The version's README.md rendered (sanitised), or why it is not shown."""
    by_path = {f.path: f for f in v.files}
    name = card_file(list(by_path))
    if name is None:
        return None
    f = by_path[name]
    if f.size > MAX_CARD_BYTES:
        return {"path": name, "html": None,
                "note": f"{name} is {human_size(f.size)}: too large to show here."}
    try:
        text = store.read_range(f.blob_digest, 0, f.size).decode("utf-8", errors="replace")
    except (LoregError, OSError) as exc:
        log.warning("model card of %s unreadable: %s", svc.version_ref(v), exc)
        return {"path": name, "html": None, "note": f"{name} cannot be read right now."}
    card = render_card(text)
    return {"path": name, "html": card.html, "metadata": card.metadata, "note": None}


def _number(value: str | None) -> int | None:
    value = _opt(value)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 9 or int(value) < 1:
        raise InvalidInput("a version is a number", details={"value": value})
    return int(value)


def _as_text(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _side_by_side(a: dict[str, Any], b: dict[str, Any], *, ordered: bool = False
                  ) -> list[dict[str, Any]]:
    """Rows of (key, a, b, differs): keys sorted, or in ``a``'s order when ``ordered``."""
    keys = list(dict.fromkeys([*a, *b])) if ordered else sorted(set(a) | set(b))
    rows = []
    for key in keys:
        left, right = _as_text(a.get(key)), _as_text(b.get(key))
        rows.append({"key": key, "a": left, "b": right, "differs": left != right})
    return rows


def _modules(v: AdapterVersion) -> list[str]:
    targets = v.target_modules
    if isinstance(targets, list):
        return sorted(str(t) for t in targets)
    return [str(targets)] if targets else []


def _norms(v: AdapterVersion) -> dict[str, float | None]:
    report = v.validation_report if isinstance(v.validation_report, dict) else {}
    modules = report.get("modules") if isinstance(report.get("modules"), dict) else {}
    out: dict[str, float | None] = {}
    for name, stats in (modules or {}).items():
        raw = stats.get("delta_norm") if isinstance(stats, dict) else None
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            out[str(name)] = float(raw)
        else:
            out[str(name)] = None
    return out


def _facts(v: AdapterVersion) -> dict[str, Any]:
    return {
        "base model": v.base_model.name if v.base_model is not None else v.base_model_name,
        "PEFT type": v.peft_type, "rank": v.r, "alpha": f"{v.lora_alpha:g}",
        "rsLoRA": "yes" if v.use_rslora else "no", "DoRA": "yes" if v.use_dora else "no",
        "rank pattern": v.rank_pattern or None, "alpha pattern": v.alpha_pattern or None,
        "modules to save": v.modules_to_save or None, "dtype": v.dtype,
        "parameters": human_count(v.num_parameters), "size": human_size(v.size_bytes),
        "validation": v.validation_state, "created": when(v.created_at),
    }


def compare_versions(a: AdapterVersion, b: AdapterVersion) -> dict[str, Any]:
    """What differs between two versions: facts, config, targets, labels, module norms."""
    na, nb = _norms(a), _norms(b)
    norm_rows = []
    for module in sorted(set(na) | set(nb), key=charts.module_sort_key):
        x, y = na.get(module), nb.get(module)
        ratio = DASH
        if x is not None and y is not None and x > 0:
            ratio = f"{y / x:.3g}{TIMES}"
        differs = (x is None) != (y is None) or (
            x is not None and y is not None and not math.isclose(x, y, rel_tol=1e-6))
        norm_rows.append({"module": module, "a": charts.fmt_norm(x) if module in na else DASH,
                          "b": charts.fmt_norm(y) if module in nb else DASH,
                          "ratio": ratio, "differs": differs})
    ta, tb = set(_modules(a)), set(_modules(b))
    targets = [{"module": m, "a": m in ta, "b": m in tb, "differs": (m in ta) != (m in tb)}
               for m in sorted(ta | tb)]
    return {
        "facts": _side_by_side(_facts(a), _facts(b), ordered=True),
        "config": _side_by_side(a.adapter_config or {}, b.adapter_config or {}),
        "targets": targets,
        "labels": _side_by_side(a.labels or {}, b.labels or {}),
        "norms": norm_rows,
        "norms_missing": [v.number for v, n in ((a, na), (b, nb)) if not n],
    }


@router.get("/adapters/{ns}/{name}/compare")
@friendly("version")
def compare_page(
    request: Request, ns: str, name: str, session: SessionDep, actor: UiActor,
    a: Text = None, b: Text = None,
) -> Response:
    adapter = svc.get_adapter(session, actor, ns, name)
    full = f"{adapter.namespace.name}/{adapter.name}"
    numbers = [v.number for v in svc.list_versions(session, actor, ns, name,
                                                   limit=200).items]
    left, right = _number(a), _number(b)
    if right is None:
        right = numbers[0] if numbers else None
    if left is None and right is not None:
        older = [n for n in numbers if n < right]
        left = older[0] if older else None
    ctx: dict[str, Any] = {"full": full, "ns": adapter.namespace.name, "name": adapter.name,
                           "numbers": numbers, "a": left, "b": right,
                           "title": f"Compare versions of {full}"}
    if left is None or right is None:
        return render(request, "compare.html", {**ctx, "cmp": None})
    va = svc.get_version(session, actor, ns, name, str(left))
    vb = svc.get_version(session, actor, ns, name, str(right))
    return render(request, "compare.html", {**ctx, "cmp": compare_versions(va, vb),
                                            "va": va, "vb": vb,
                                            "title": f"{full}: v{left} vs v{right}"})


# --------------------------------------------------------------------------- bases


@router.get("/bases")
def base_list(request: Request, session: SessionDep, actor: UiActor,
              q: Text = None, cursor: Text = None) -> Response:
    error = None
    page: Page[Any] = Page([], None)
    try:
        page = bases.list_bases(session, query=_opt(q), cursor=_opt(cursor), limit=PAGE_SIZE)
    except InvalidInput as exc:
        error = exc.message
    params = [("q", q)] if _opt(q) else []
    next_url = ("/ui/bases?" + urlencode([*params, ("cursor", page.next_cursor)])
                if page.next_cursor else None)
    return render(request, "bases.html", {"bases": page.items, "q": q or "", "error": error,
                                          "next_url": next_url},
                  status=400 if error else 200)


@router.get("/bases/{name:path}")
@friendly("base model")
def base_page(request: Request, name: str, session: SessionDep, actor: UiActor,
              cursor: Text = None) -> Response:
    base = bases.get_base(session, name)
    try:
        page = svc.search(session, actor, svc.SearchFilters(base=base.name),
                          cursor=_opt(cursor), limit=PAGE_SIZE)
    except InvalidInput:
        page = svc.search(session, actor, svc.SearchFilters(base=base.name), limit=PAGE_SIZE)
    users = svc.user_names(session, [base.created_by])
    next_url = (f"/ui/bases/{base.name}?" + urlencode({"cursor": page.next_cursor})
                if page.next_cursor else None)
    return render(request, "base.html", {
        "base": base, "rows": [_summary_row(s) for s in page.items], "next_url": next_url,
        "created_by": users.get(base.created_by or -1),
        "num_tensors": len(base.manifest or {}), "title": base.name,
    })


# --------------------------------------------------------------------------- jobs


def _job_view(session: Any, actor: Principal, job: Job) -> dict[str, Any]:
    users = svc.user_names(session, [job.submitted_by])
    outputs: list[Any] = []
    outputs_note = None
    if job.status == JobStatus.SUCCEEDED.value:
        try:
            _, outputs = jobs.outputs(session, actor, job.id)
        except LoregError as exc:
            outputs_note = exc.message
    return {
        "job": job, "submitted_by": users.get(job.submitted_by or -1),
        "terminal": job.status in jobs.TERMINAL, "percent": round(100 * (job.progress or 0)),
        "outputs": outputs, "outputs_note": outputs_note,
        "can_cancel": jobs.can_cancel(session, actor, job),
        "inputs": [i.get("ref") or i.get("resolved") for i in (job.params or {}).get("inputs", [])
                   if isinstance(i, dict)],
    }


_STATUSES = [s.value for s in JobStatus]


@router.get("/jobs")
@friendly("job")
def job_list(request: Request, session: SessionDep, actor: UiActor,
             status: Text = None, before: Text = None) -> Response:
    if actor is None:
        return login_redirect(request)
    wanted = [status] if status in _STATUSES else None
    before_id = _opt(before)
    try:
        rows = jobs.list_jobs(session, actor, status=wanted, limit=PAGE_SIZE, before=before_id)
    except InvalidInput:
        rows = jobs.list_jobs(session, actor, status=wanted, limit=PAGE_SIZE)
    users = svc.user_names(session, [j.submitted_by for j in rows])
    params = [("status", status)] if wanted else []
    next_url = ("/ui/jobs?" + urlencode([*params, ("before", rows[-1].id)])
                if len(rows) == PAGE_SIZE else None)
    return render(request, "jobs.html", {
        "jobs": [(j, users.get(j.submitted_by or -1)) for j in rows], "status": status or "",
        "statuses": _STATUSES, "next_url": next_url, "title": "Jobs",
    })


@router.get("/jobs/{job_id}/progress.json")
def job_progress(job_id: str, request: Request, session: SessionDep,
                 actor: UiActor) -> Response:
    """What the job page's script polls (the cookie authenticates it)."""
    try:
        job = jobs.get(session, actor, job_id)
    except Unauthenticated:
        return JSONResponse({"error": "sign in"}, status_code=401)
    except LoregError:
        return JSONResponse({"error": "not found"}, status_code=404)
    return _finish(request, JSONResponse({
        "id": job.id, "status": job.status, "progress": job.progress,
        "percent": round(100 * (job.progress or 0)), "message": job.progress_message or "",
        "terminal": job.status in jobs.TERMINAL, "cancel_requested": job.cancel_requested,
    }))


@router.get("/jobs/{job_id}")
@friendly("job")
def job_page(job_id: str, request: Request, session: SessionDep, actor: UiActor) -> Response:
    job = jobs.get(session, actor, job_id)
    assert actor is not None
    return render(request, "job.html", {**_job_view(session, actor, job),
                                        "title": f"Job {job.id}"})


@router.post("/jobs/{job_id}/cancel")
@friendly("job")
def job_cancel(job_id: str, request: Request, session: SessionDep, actor: UiActor,
               form: FormDep) -> Response:
    cookie = request.cookies.get(COOKIE)
    if actor is None or cookie is None:
        return login_redirect(request)
    if not _same_origin(request) or not hmac.compare_digest(form.get("csrf", ""),
                                                            csrf_token(cookie)):
        return error_page(request, 403, "Forbidden",
                          "The form has expired; reload the page and try again.")
    job = jobs.cancel(session, actor, job_id)
    session.commit()
    return _finish(request, RedirectResponse(f"/ui/jobs/{job.id}", status_code=303))


@router.get("/jobs/{job_id}/outputs/{path:path}")
@friendly("output")
def job_output(job_id: str, path: str, request: Request, session: SessionDep,
               actor: UiActor, settings: SettingsDep, store: StoreDep) -> Response:
    """Download one output file (the browser has the cookie, not a Bearer token)."""
    _, artifacts = jobs.outputs(session, actor, job_id)
    match = next((a for a in artifacts if a.path == path), None)
    if match is None:
        return not_found(request, "output file")
    digest, size = match.blob_digest, match.size
    session.close()
    url = store.presigned_url(digest, expires_in=settings.presign_expires_seconds)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    filename = path.rsplit("/", 1)[-1]
    chunks: Iterator[bytes] = iter_file(store.open(digest), length=size)
    return StreamingResponse(chunks, media_type="application/octet-stream", headers={
        "Content-Length": str(size), "Cache-Control": "no-store",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
    })


# --------------------------------------------------------------------------- fallback


@router.get("/{rest:path}")
def unknown(rest: str, request: Request, actor: UiActor) -> Response:
    return not_found(request)
