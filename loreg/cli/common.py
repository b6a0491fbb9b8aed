"""What every loreg command shares: settings, the client, ``--json``, progress, errors.

The one place that turns exceptions into messages and exit codes is ``run`` (docs/design.md
§10): 0 success, 1 error, 2 usage error, 3 incompatible or invalid. With ``--json``
stdout holds exactly one JSON document: the result, or the API's error object.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from loreg.client import Client
    from loreg.client.models import Job
    from loreg.client.transfer import Bar
    from loreg.config import Settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INVALID = 0, 1, 2, 3

_JSON_KEY = "loreg.json"


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[_JSON_KEY] = True  # meta is shared by every context of one invocation
    return value


def json_option(f: F) -> F:
    """``--json``: one JSON document on stdout, nothing else there."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        is_eager=True,
        callback=_set_json,
        help="Print one JSON document on stdout (errors: the API's error object).",
    )(f)


def json_mode(ctx: click.Context | None = None) -> bool:
    """Whether this invocation was given ``--json`` (per invocation: nothing global)."""
    ctx = ctx or click.get_current_context(silent=True)
    return ctx is not None and bool(ctx.meta.get(_JSON_KEY))


# --- options shared by merge, combine and export ------------------------------------------


def parse_weights(value: str | None, n: int) -> list[float] | None:
    """``--weights 0.7,0.3`` for ``n`` adapters; ``None`` when not given."""
    if value is None:
        return None
    try:
        weights = [float(w) for w in value.split(",") if w.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected numbers like 0.7,0.3", param_hint="--weights"
        ) from None
    if len(weights) != n:
        raise click.BadParameter(
            f"{len(weights)} weight(s) for {n} adapter(s)", param_hint="--weights"
        )
    return weights


# --- settings and client ----------------------------------------------------------------------


def settings(ctx: click.Context | None = None) -> Settings:
    """The settings, read once per invocation at the root context and passed down."""
    from loreg.config import Settings

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    obj = root.ensure_object(dict)
    obj["command"] = ctx.command  # the command running, for error messages (``flag_for``)
    if "settings" not in obj:
        obj["settings"] = Settings()
    s: Settings = obj["settings"]
    return s


def client(ctx: click.Context | None = None) -> Client:
    """A client built from the settings (LOREG_URL/LOREG_TOKEN, else the stored login)."""
    from loreg.client import Client

    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    obj = root.ensure_object(dict)
    if "client" not in obj:
        c = Client.from_settings(settings(ctx))
        obj["client"] = c
        root.call_on_close(c.close)
    cl: Client = obj["client"]
    return cl


# --- output ------------------------------------------------------------------------------


def as_document(data: Any) -> Any:
    """What ``--json`` prints for a result: a typed result (or a list of them) as the
    document the API sent (``to_dict()``); anything else as it is."""
    if isinstance(data, list | tuple):
        return [as_document(item) for item in data]
    to_dict = getattr(data, "to_dict", None)
    return to_dict() if callable(to_dict) else data


def emit(data: Any, human: str | Callable[[], object] | None = None) -> None:
    """Print the result: JSON with ``--json``, else the human form."""
    data = as_document(data)
    if json_mode():
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))
        return
    if human is None:
        click.echo(json.dumps(data, indent=2, default=str))
    elif callable(human):
        human()
    else:
        click.echo(human)


def info(message: str) -> None:
    """A note for humans: on stderr, so stdout stays clean for ``--json``."""
    click.echo(message, err=True)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """A plain aligned table, like ``docker images``."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def when(value: datetime | None) -> str:
    """A time as a person reads it: ``2026-01-31 12:00:00`` (UTC, as the registry keeps it)."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def as_text(value: Any) -> str:
    """A value as a person reads it: lists joined, mappings as key=value, no Python reprs."""
    if value is None:
        return "none"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(as_text(v) for v in value) if value else "none"
    if isinstance(value, dict):
        if not value:
            return "none"
        return ", ".join(f"{k}={_nested(v)}" for k, v in value.items())
    return str(value)


def _nested(value: Any) -> str:
    """A value inside a mapping: scalars as text, structures as compact JSON."""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    return as_text(value)


def fields(rows: Sequence[tuple[str, Any]], width: int = 16) -> None:
    """``key:  value`` lines, values through ``as_text``."""
    for key, value in rows:
        click.echo(f"{key + ':':<{width}} {value if isinstance(value, str) else as_text(value)}")


def progress_factory() -> Callable[[str, int], Bar]:
    """tqdm bars on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    def make(desc: str, total: int) -> Bar:
        return tqdm(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            disable=None,
            leave=False,
            dynamic_ncols=True,
        )

    return make


class JobProgress:
    """A job's progress (0..1 with a message) as a tqdm bar on stderr."""

    def __init__(self, job_id: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=100,
            desc=f"job {job_id}",
            unit="%",
            file=sys.stderr,
            disable=None,
            leave=False,
            dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
        )
        self.last = 0.0

    def __call__(self, job: Job) -> None:
        pct = max(0.0, min(100.0, job.progress * 100))
        if pct > self.last:
            self.bar.update(pct - self.last)
            self.last = pct
        self.bar.set_postfix_str(f"{job.status} {job.progress_message}".strip())

    def close(self) -> None:
        self.bar.close()


# --- errors --------------------------------------------------------------------------------


def _error_object(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _classify(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(exit code, error object) for any exception; the only mapping in the CLI."""
    from loreg.client.errors import ApiError, JobFailed
    from loreg.errors import Incompatible, LoregError

    if isinstance(exc, JobFailed):
        code = exc.job.error_code if exc.job is not None else None
        invalid = code in {"incompatible", "invalid", "invalid_adapter"} or (
            isinstance(code, str) and code.startswith("incompatible")
        )
        return (EXIT_INVALID if invalid else EXIT_ERROR), exc.to_dict()
    if isinstance(exc, ApiError):
        return (EXIT_INVALID if exc.status == 422 else EXIT_ERROR), exc.to_dict()
    if isinstance(exc, LoregError):
        invalid = isinstance(exc, Incompatible) or type(exc).__module__.startswith("loreg.formats")
        return (EXIT_INVALID if invalid else EXIT_ERROR), {"error": exc.to_dict()}
    if isinstance(
        exc, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError
    ):
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        return EXIT_ERROR, _error_object("os_error", f"{exc.strerror or exc}{where}")
    if isinstance(exc, OSError):
        return EXIT_ERROR, _error_object("os_error", str(exc))
    if isinstance(exc, TimeoutError):
        return EXIT_ERROR, _error_object("timeout", str(exc) or "timed out")
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        from loreg.cli.extras import install_command

        return EXIT_ERROR, _error_object(
            "missing_dependency",
            f"this installation of loreg ({sys.prefix}) lacks the Python package "
            f"{exc.name!r}: reinstall loreg with the extras you use "
            f"(`{install_command('server')}` installs them all)",
        )
    return EXIT_ERROR, _error_object(
        "internal_error", f"unexpected error ({type(exc).__name__}): {exc}"
    )


#: API fields whose command-line option has another name.
_FIELD_PARAMS = {
    "expires_in_days": "expires_in",
    "max_shard_bytes": "shard_size",
    "label": "labels",
    "adapters": "refs",
}


def flag_for(command: click.Command | None, field: str) -> str | None:
    """The option (``--base``) or argument (``REF``) of ``command`` an API field comes from."""
    if command is None:
        return None
    leaf = field.removeprefix("params.")
    leaf = "weights" if re.fullmatch(r"adapters\.\d+\.weight", leaf) else leaf.split(".")[0]
    names = {leaf, _FIELD_PARAMS.get(leaf, leaf)}
    for param in command.params:
        if param.name not in names:
            continue
        if isinstance(param, click.Option):
            longs = [o for o in param.opts if o.startswith("--")]
            return longs[0] if longs else param.opts[0]
        return param.human_readable_name
    return None


def name_flags(obj: dict[str, Any], command: click.Command | None) -> dict[str, Any]:
    """The error object with API field names replaced by the command's flags (``--base``)."""
    err = obj.get("error")
    details = err.get("details") if isinstance(err, dict) else None
    named: list[str] = []
    if isinstance(details, dict) and isinstance(details.get("field"), str):
        named.append(details["field"])
    if isinstance(details, dict) and isinstance(details.get("errors"), list):
        named += [
            str(e["field"])
            for e in details["errors"]
            if isinstance(e, dict) and isinstance(e.get("field"), str)
        ]
    if not named or not isinstance(err, dict):
        return obj
    message = str(err.get("message", ""))
    for field in dict.fromkeys(named):
        flag = flag_for(command, field)
        if flag is None:
            continue
        for quoted in (f"'{field}'", f'"{field}"', f"`{field}`", f"params.{field}"):
            message = message.replace(quoted, flag)
        message = re.sub(rf"(?<![\w.\-'\"`]){re.escape(field)}(?=:)", flag, message)
        if message.startswith(field + " "):
            message = flag + message[len(field) :]
        if flag not in message:
            message = f"{message} ({flag})"
    return {**obj, "error": {**err, "message": message}}


def report_error(
    exc: BaseException, *, as_json: bool | None = None, command: click.Command | None = None
) -> int:
    """Print an error (JSON object on stdout with --json, else a message on stderr).

    ``as_json`` for callers outside the command's context (``run``); else ``json_mode()``.
    ``command`` names the flags that API fields in the message stand for."""
    code, obj = _classify(exc)
    obj = name_flags(obj, command)
    if json_mode() if as_json is None else as_json:
        click.echo(json.dumps(obj, default=str))
    else:
        err = obj["error"]
        msg = f"error: {err['message']}"
        details = err.get("details")
        extra = "" if "\n" in err["message"] else _detail_lines(details)
        click.echo(msg + ("\n" + extra if extra else ""), err=True)
    return code


def _detail_lines(details: Any) -> str:
    """A short human rendering of a 422 report (which module, which shapes)."""
    if not isinstance(details, dict):
        return ""
    lines = []
    for key in ("problems", "modules", "mismatches"):  # ("errors" are in the message)
        items = details.get(key)
        if isinstance(items, list):
            for item in items[:20]:
                lines.append(f"  - {item if not isinstance(item, dict) else _one_line(item)}")
    return "\n".join(lines)


def _one_line(item: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in item.items())


def run(group: click.Group, args: Sequence[str] | None = None) -> None:
    """Run the CLI with loreg's error contract; never shows a stack trace."""
    argv = list(sys.argv[1:] if args is None else args)
    # Errors arrive here after the command's context is gone, and usage errors can come
    # before the --json option is parsed: decide from the arguments.
    as_json = "--json" in argv
    state: dict[str, Any] = {}  # the root context's obj: settings, client, the command run
    try:
        rv = group.main(args=argv, prog_name="loreg", standalone_mode=False, obj=state)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        if as_json:
            kind = "usage_error" if exc.exit_code == EXIT_USAGE else "error"
            click.echo(json.dumps(_error_object(kind, exc.format_message())))
        else:
            exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException as exc:
        sys.exit(report_error(exc, as_json=as_json, command=state.get("command")))
    # standalone_mode=False turns ``ctx.exit(n)`` into a return value.
    sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK)
