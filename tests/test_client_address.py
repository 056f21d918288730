"""The client address a per-client rate limit counts: the socket peer, or X-Forwarded-For behind trusted proxies."""

import httpx
import pytest
from pydantic import ValidationError

from app.security.client_address import UNKNOWN, client_key, parse_networks
from app.config import Settings
from tests.factories import tiny_causal_lm
from tests.server import NO_RATE_LIMITS, parley_test_server

TRUSTED = parse_networks("10.0.0.0/8, 2001:db8:ffff::/48, 192.0.2.7")


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("198.51.100.9", ["203.0.113.1"], "198.51.100.9"),  # an untrusted peer's header is ignored
    ("10.1.2.3", ["203.0.113.1"], "203.0.113.1"),
    ("10.1.2.3", [], "10.1.2.3"),  # the proxy's own request
    ("10.1.2.3", ["192.0.2.66, 203.0.113.1"], "203.0.113.1"),  # the left hop was written by the client
    ("10.1.2.3", ["203.0.113.1, 10.9.9.9"], "203.0.113.1"),  # through two trusted proxies
    ("10.1.2.3", ["203.0.113.1", "10.9.9.9"], "203.0.113.1"),  # ... in two header lines
    ("192.0.2.7", ["10.1.1.1, 10.2.2.2"], "10.1.1.1"),  # only trusted hops: the farthest one
    ("10.1.2.3", ["not-an-ip"], "10.1.2.3"),  # garbage from a trusted proxy: that proxy's own address
    ("10.1.2.3", ["203.0.113.1:5060"], "203.0.113.1"),  # with a port
    ("10.1.2.3", ["[2001:db8:1:2::7]:443"], "2001:db8:1:2::/64"),
    ("2001:db8:ffff::1", ["2001:db8:1:2:aaaa::9"], "2001:db8:1:2::/64"),  # IPv6: one /64 is one subscriber
    ("2001:db8:1:2::1", [], "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.9", [], "198.51.100.9"),  # an IPv4 client on a dual-stack socket
    ("testclient", ["203.0.113.1"], "testclient"),  # not an IP: never trusted
    (None, ["203.0.113.1"], UNKNOWN),
])
def test_client_key(peer, forwarded, expected):
    assert client_key(peer, forwarded, trusted=TRUSTED) == expected


def test_without_trusted_proxies_the_header_never_counts():
    assert client_key("127.0.0.1", ["203.0.113.1"], trusted=()) == "127.0.0.1"


def test_a_bad_trusted_proxy_setting_fails_at_start_up():
    with pytest.raises(ValidationError, match="10.0.0.300/8"):
        Settings(trusted_proxies="10.0.0.0/8, 10.0.0.300/8")
    assert Settings(trusted_proxies="").trusted_proxy_networks == ()
    assert [str(n) for n in Settings(trusted_proxies="10.0.0.1/8").trusted_proxy_networks] == ["10.0.0.0/8"]


def test_a_real_server_ignores_forwarded_for_from_a_loopback_peer(redis_url, tmp_path_factory):
    """uvicorn on its own would believe X-Forwarded-For from 127.0.0.1; `parley serve` leaves that to Parley."""
    env = {**NO_RATE_LIMITS, "PARLEY_CLIENT_RATE_LIMIT_PER_MIN": "3",
           "PARLEY_DECODER": str(tiny_causal_lm(tmp_path_factory.mktemp("decoder"))),
           "PARLEY_DATA_DIR": str(tmp_path_factory.mktemp("data"))}
    with parley_test_server(redis_url, log_dir=tmp_path_factory.mktemp("log"), env=env) as base:
        with httpx.Client(base_url=base, timeout=30) as http:
            statuses = [http.post("/v1/sessions", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                        for n in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
