"""Where webhooks may go: https only, no credentials, and public addresses unless the operator allows private ones."""

from __future__ import annotations

import ipaddress

import pytest

from robotrain.webhooks.addresses import is_public, resolve
from robotrain.webhooks.errors import WebhookUrlRefused


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "0.0.0.0",
        "224.0.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    ],
)
def test_private_loopback_link_local_and_reserved_addresses_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"])
def test_global_unicast_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://93.184.216.34/hook", "https"),
        ("ftp://example.com/hook", "https://"),
        ("https://user:pw@93.184.216.34/hook", "credentials"),
        ("https:///nohost", "no host"),
        ("https://127.0.0.1/hook", "private, loopback"),
        ("https://localhost:8443/hook", "private, loopback"),
        ("https://[::1]/hook", "private, loopback"),
    ],
)
def test_refused_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(WebhookUrlRefused) as refused:
        resolve(url, allow_private=False)
    assert why in refused.value.message and refused.value.status_code == 422


def test_the_operator_may_allow_private_addresses_and_then_plain_http_to_them() -> None:
    target = resolve("http://127.0.0.1:9/hook?x=1", allow_private=True)
    assert (target.address, target.port, target.path) == ("127.0.0.1", 9, "/hook?x=1")
    assert target.connect_url == "http://127.0.0.1:9/hook?x=1" and target.host_header == "127.0.0.1:9"
    with pytest.raises(WebhookUrlRefused, match="plain http"):
        resolve("http://93.184.216.34/hook", allow_private=True)
