"""``loreg serve`` through the real binary: where it cannot listen, it says so and exits 1."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.cli.harness import LoregEnv


def test_a_busy_port_is_exit_1_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = LoregEnv(home=tmp_path / "home")
        res = env.run("serve", "--port", str(port), check=1, timeout=60)
        assert res.stdout == ""
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith(f"error: port {port} on 127.0.0.1 is already in use")
        assert "--port N" in lines[0] and "LOREG_URL=http://127.0.0.1:N" in lines[0]
        doc = env.json("serve", "--port", str(port), check=1, timeout=60)
        assert doc["error"]["code"] == "cannot_listen"
    # nothing was set up for a server that never ran
    assert not (tmp_path / "home" / "credentials.json").exists()


def test_an_address_not_on_this_machine(tmp_path: Path) -> None:
    env = LoregEnv(home=tmp_path / "home")
    res = env.run("serve", "--host", "192.0.2.1", "--port", "0", check=1, timeout=60)
    assert "cannot listen on 192.0.2.1:0" in res.stderr and "--host 127.0.0.1" in res.stderr
