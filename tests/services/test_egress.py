"""The egress guard: which addresses are internal, resolution of every spelling, and
requests pinned to the address that was checked."""

from __future__ import annotations

import ipaddress

import pytest

from loreg.config import Settings
from loreg.services import egress
from loreg.services.egress import (
    STRICT,
    DestinationRefused,
    DestinationUnresolved,
    EgressPolicy,
    why_not_public,
)
from tests.fixtures.webhooks import LOOPBACK


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("64:ff9b::7f00:1", "loopback"),
        ("2002:7f00:1::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "not globally routable"),
        ("240.0.0.1", "private"),
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_internal_addresses(address: str, kind: str | None) -> None:
    assert why_not_public(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "0x7f000001", "2130706433", "0177.0.0.1", "localhost", "::1", "::ffff:127.0.0.1"],
)
def test_every_spelling_of_loopback_resolves_to_a_refusal(host: str) -> None:
    with pytest.raises(DestinationRefused) as err:
        egress.resolve(host, 80, STRICT)
    assert err.value.details["kind"] == "loopback"
    if ":" not in host:  # IPv4 spellings are allowed with 127.0.0.0/8
        assert egress.resolve(host, 80, LOOPBACK)


def test_allowed_networks_come_from_the_operator() -> None:
    policy = EgressPolicy.from_settings(Settings(webhook_allow_networks="10.0.0.0/8, fd00::/8"))
    assert policy.allows(ipaddress.ip_address("10.2.3.4"))
    assert policy.allows(ipaddress.ip_address("fd00::5"))
    assert not policy.allows(ipaddress.ip_address("192.168.0.1"))
    egress.check_address(ipaddress.ip_address("::ffff:10.0.0.1"), policy, "h")
    with pytest.raises(ValueError, match="not a network"):
        Settings(webhook_allow_networks="10.0.0.0/8,intranet")


def test_unresolvable_names_pass_storage_but_not_requests() -> None:
    egress.check_url("http://no-such-host.invalid/hook", STRICT, require_resolution=False)
    with pytest.raises(DestinationUnresolved):
        egress.check_url("http://no-such-host.invalid/hook", STRICT)
