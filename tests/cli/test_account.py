"""Accounts through the real ``loreg`` binary: a new user's token shown once, logins, and
errors about credentials that say where they came from and what to run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.harness import LoregEnv, Result


def one_line_error(res: Result) -> str:
    """The error a person sees: one line on stderr, nothing on stdout, no traceback."""
    assert res.stdout == "", res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_user_create_prints_the_token_once_with_a_warning(served: LoregEnv) -> None:
    res = served.run("user", "create", "alice")
    token = res.stdout.strip()
    assert token.startswith("lrg_") and "\n" not in token  # stdout: the token alone
    assert "created user alice" in res.stderr
    assert "store it now" in res.stderr and "not shown again" in res.stderr
    assert f"loreg login {served.url} --token TOKEN" in res.stderr

    # it is alice's, and it works
    me = served.json("whoami", env=served.env(LOREG_TOKEN=token))
    assert me["user"] == "alice"
    # never shown again: alice's token list has no values
    listed = served.run("token", "ls", "--json", env=served.env(LOREG_TOKEN=token)).stdout
    assert token not in listed

    doc = served.json("user", "create", "bob")
    assert doc["token"]["token"].startswith("lrg_") and doc["user"]["name"] == "bob"


def test_login_takes_the_url_as_an_argument(served: LoregEnv, tmp_path: Path) -> None:
    token = served.run("user", "create", "carol").stdout.strip()
    home = tmp_path / "carol-home"
    env = LoregEnv(home=home)  # a fresh LOREG_HOME: no stored login
    res = env.run("login", served.url, "--token", token)
    assert f"logged in to {served.url} as carol" in res.stdout
    stored = json.loads((home / "credentials.json").read_text())
    assert stored == {"url": served.url, "token": token}
    assert env.json("whoami")["user"] == "carol"  # the stored login is used

    bad = one_line_error(env.run("login", served.url, "--token", "lrg_not-a-token", check=1))
    assert "does not accept this token" in bad and "loreg token create" in bad
    assert json.loads((home / "credentials.json").read_text())["token"] == token  # kept


def test_no_login_names_loreg_home_and_what_to_run(served: LoregEnv, tmp_path: Path) -> None:
    home = tmp_path / "nobody"
    env = LoregEnv(home=home, extra={"LOREG_URL": served.url})
    line = one_line_error(env.run("whoami", check=1))
    assert "not logged in" in line and "LOREG_TOKEN is unset" in line
    assert str(home / "credentials.json") in line and f"LOREG_HOME={home}" in line
    assert f"`loreg login {served.url}`" in line and "`loreg serve`" in line
    assert env.json("whoami", check=1)["error"]["code"] == "unauthenticated"

    # a stored login for another registry is not sent here, and the message says so
    home.mkdir(parents=True, exist_ok=True)
    (home / "credentials.json").write_text(
        json.dumps({"url": "http://registry.example:8080", "token": "lrg_elsewhere"}))
    line = one_line_error(env.run("whoami", check=1))
    assert "is for http://registry.example:8080" in line
    assert f"loreg login {served.url}" in line


def test_a_rejected_token_says_where_it_came_from(served: LoregEnv, tmp_path: Path) -> None:
    # from LOREG_TOKEN
    env = LoregEnv(home=tmp_path / "h1", extra={"LOREG_URL": served.url,
                                                "LOREG_TOKEN": "lrg_bogus"})
    line = one_line_error(env.run("whoami", check=1))
    assert "the token in LOREG_TOKEN" in line and "invalid token" in line
    assert "unset it to use the stored login" in line

    # from the stored login: a token that was revoked
    token = served.run("token", "create", "short-lived").stdout.strip()
    token_id = next(t["id"] for t in served.json("token", "ls") if t["name"] == "short-lived")
    served.run("token", "revoke", str(token_id))
    home = tmp_path / "h2"
    home.mkdir()
    (home / "credentials.json").write_text(json.dumps({"url": served.url, "token": token}))
    line = one_line_error(LoregEnv(home=home).run("whoami", check=1))
    assert f"the token stored in {home / 'credentials.json'}" in line
    assert "revoked" in line and f"`loreg login {served.url}`" in line


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_an_unreachable_registry_names_the_url_and_its_source(
    tmp_path: Path, url: str
) -> None:
    from tests.cli.harness import free_port

    target = url.format(port=free_port())
    env = LoregEnv(home=tmp_path / "home", extra={"LOREG_URL": target})
    line = one_line_error(env.run("ls", check=1))
    assert f"cannot reach the registry at {target} (from LOREG_URL)" in line
    assert "connection refused" in line and "`loreg serve`" in line and "loreg login URL" in line

    # no LOREG_URL: the stored login's URL, and the message says where it is stored
    home = tmp_path / "home2"
    home.mkdir()
    (home / "credentials.json").write_text(json.dumps({"url": target, "token": "lrg_x"}))
    line = one_line_error(LoregEnv(home=home).run("whoami", check=1))
    assert f"cannot reach the registry at {target} (stored in {home / 'credentials.json'})" \
        in line
