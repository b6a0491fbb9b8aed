"""``loreg login / whoami / token / user / org``: credentials and accounts."""

from __future__ import annotations

import click

from loreg.cli.common import client, emit, info, json_option, settings, table, when
from loreg.cli.hints import CONFLICT, FORBIDDEN, NOT_FOUND, hinted
from loreg.client.errors import PermissionDenied


@click.command()
@click.argument("url_arg", metavar="[URL]", required=False)
@click.option(
    "--url",
    help="The registry's URL (default: LOREG_URL, the stored login, or http://127.0.0.1:8080).",
)
@click.option("--token", help="An API token (lrg_...); prompted for when not given.")
@json_option
def login(url_arg: str | None, url: str | None, token: str | None, as_json: bool) -> None:
    """Check a token against the registry at URL and store both for later commands."""
    from loreg.client import Client
    from loreg.client.credentials import credentials_path, load_credentials

    if url_arg and url and url_arg != url:
        raise click.UsageError("give the URL once: as an argument or with --url")
    s = settings()
    stored = load_credentials(s.home)
    url = url_arg or url or (s.url if "url" in s.model_fields_set else None) or stored.url or s.url
    if token is None:
        token = s.token
    if token is None:
        token = click.prompt("token", hide_input=True, err=True)
    with Client(url, token, home=s.home) as c:
        me = c.login()
    emit(
        {"url": url, "user": me.to_dict(), "credentials": str(credentials_path(s.home).absolute())},
        f"logged in to {url} as {me.user}",
    )


@click.command()
@json_option
def whoami(as_json: bool) -> None:
    """Show who the stored (or LOREG_TOKEN) credentials belong to."""
    c = client()
    me = c.whoami()
    extra = f" (token scope: {me.scope})" if me.scope else ""
    emit(me, f"{me.user} at {c.url}{extra}")


@click.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scope", type=click.Choice(["read", "write", "admin"]), default="write", show_default=True
)
@click.option(
    "--expires-in",
    "expires_in",
    type=click.IntRange(min=1),
    metavar="DAYS",
    help="Expire after this many days (default: never).",
)
@json_option
def token_create(name: str, scope: str, expires_in: int | None, as_json: bool) -> None:
    """Create a token; its value is printed once and never again."""
    out = client().create_token(name, scope=scope, expires_in_days=expires_in)

    def human() -> None:
        click.echo(out.token)
        info("store it now: it is not shown again")

    emit(out, human)


@token.command("ls")
@json_option
def token_ls(as_json: bool) -> None:
    """List your tokens."""
    items = client().list_tokens()
    emit(
        items,
        lambda: table(
            [
                [
                    t.id,
                    t.name,
                    t.scope,
                    when(t.created_at),
                    when(t.expires_at),
                    when(t.last_used_at),
                ]
                for t in items
            ],
            ["ID", "NAME", "SCOPE", "CREATED", "EXPIRES", "LAST USED"],
        ),
    )


@token.command("revoke")
@click.argument("token_id")
@json_option
def token_revoke(token_id: str, as_json: bool) -> None:
    """Revoke a token by id."""
    client().revoke_token(token_id)
    emit({"revoked": token_id}, f"revoked token {token_id}")


@click.group()
def user() -> None:
    """User accounts (admin)."""


@user.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user a registry administrator.")
@click.option("--email")
@json_option
def user_create(name: str, admin: bool, email: str | None, as_json: bool) -> None:
    """Create a user (and its namespace); prints the user's first token, once."""
    c = client()
    out = c.create_user(name, admin=admin, email=email)
    token = out.token

    def human() -> None:
        info(f"created user {name}" + (" (admin)" if admin else ""))
        if token is None:
            return
        click.echo(token.token)
        info(
            f"that is {name}'s token (scope {token.scope}): store it now, it is not shown "
            f"again; {name} logs in with `loreg login {c.url} --token TOKEN`"
        )

    emit(out, human)


@click.group()
def org() -> None:
    """Organisations: shared namespaces with members."""


@org.command("create")
@click.argument("name")
@click.option("--description", default="")
@json_option
def org_create(name: str, description: str, as_json: bool) -> None:
    """Create an organisation; you become its admin."""
    out = client().create_org(name, description=description)
    emit(out, f"created organisation {name}")


@org.command("add-member")
@click.argument("org_name", metavar="ORG")
@click.argument("user_name", metavar="USER")
@click.option("--role", type=click.Choice(["read", "write", "admin"]), required=True)
@json_option
def org_add_member(org_name: str, user_name: str, role: str, as_json: bool) -> None:
    """Add USER to ORG with a role (or change their role)."""
    out = client().add_member(org_name, user_name, role)
    emit(out, f"{user_name} is now {role} in {org_name}")


@user.command("ls")
@json_option
def user_ls(as_json: bool) -> None:
    """List every user (site administrators)."""
    with hinted({FORBIDDEN: "listing users needs a site administrator's admin-scoped token"}):
        items = client().list_users()
    emit(
        items,
        lambda: table(
            [
                [
                    u.name,
                    "yes" if u.is_admin else "",
                    u.email or "",
                    "yes" if u.disabled else "",
                    when(u.created_at)[:10],
                ]
                for u in items
            ],
            ["NAME", "ADMIN", "EMAIL", "DISABLED", "CREATED"],
        ),
    )


@org.command("ls")
@click.option("--mine", is_flag=True, help="Only organisations you belong to.")
@json_option
def org_ls(mine: bool, as_json: bool) -> None:
    """List organisations, with your role in each."""
    items = client().list_orgs(mine=mine)
    emit(
        items,
        lambda: table(
            [[o.name, o.role or "-", o.description] for o in items],
            ["ORG", "YOUR ROLE", "DESCRIPTION"],
        ),
    )


@org.command("members")
@click.argument("org_name", metavar="ORG")
@json_option
def org_members(org_name: str, as_json: bool) -> None:
    """List ORG's members and their roles (members and site administrators)."""
    with hinted({NOT_FOUND: "list organisations with 'loreg org ls'"}):
        out = client().get_org(org_name)
    members = out.members
    if members is None:
        raise PermissionDenied(
            f"only members of '{org_name}' and site administrators see its members: "
            f"ask an admin of '{org_name}' to add you",
            code="permission_denied",
        )
    emit(members, lambda: table([[m.user, m.role] for m in members], ["USER", "ROLE"]))


@org.command("remove-member")
@click.argument("org_name", metavar="ORG")
@click.argument("user_name", metavar="USER")
@json_option
def org_remove_member(org_name: str, user_name: str, as_json: bool) -> None:
    """Remove USER from ORG (organisation admins; anyone may remove themselves)."""
    with hinted(
        {
            NOT_FOUND: f"see the members with 'loreg org members {org_name}'",
            CONFLICT: "make another member admin first "
            f"(loreg org add-member {org_name} USER --role admin)",
        }
    ):
        client().remove_member(org_name, user_name)
    emit({"org": org_name, "removed": user_name}, f"removed {user_name} from {org_name}")


COMMANDS = [login, whoami, token, user, org]
