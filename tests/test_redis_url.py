"""PARLEY_REDIS_URL shapes: standalone, Cluster and Sentinel, and clear errors for anything else."""

import pytest

from app.store.url import RedisTarget, parse_redis_url


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://u:p@host:6380/2", "unix:///tmp/r.sock?db=1"])
def test_standalone_urls_pass_through(url):
    assert parse_redis_url(url) == RedisTarget(kind="standalone", url=url)


def test_cluster_url_lists_startup_nodes():
    target = parse_redis_url("redis+cluster://:s%40cret@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert target.kind == "cluster" and target.password == "s@cret" and target.username is None
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert parse_redis_url("rediss+cluster://h:1/0").ssl is True


def test_sentinel_url_names_service_and_db():
    target = parse_redis_url("redis+sentinel://app:pw@s1:26379,s2/mymaster/3")
    assert (target.kind, target.service_name, target.db) == ("sentinel", "mymaster", 3)
    assert target.nodes == (("s1", 26379), ("s2", 26379)) and (target.username, target.password) == ("app", "pw")
    assert parse_redis_url("redis+sentinel://s1/mymaster").db == 0


@pytest.mark.parametrize("url, message", [
    ("http://h:1", "unsupported Redis URL scheme"),
    ("127.0.0.1:6379", "unsupported Redis URL scheme"),
    ("redis+sentinel://s1:26379", "needs /<service_name>"),
    ("redis+sentinel://s1/m/x", "needs /<service_name>"),
    ("redis+cluster://:secret@h:1/2", "only db 0"),
    ("redis+cluster://h:port", "bad host:port"),
])
def test_bad_urls_say_what_is_expected(url, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_redis_url(url)
    assert "secret" not in str(info.value)
