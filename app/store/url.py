"""Which Redis deployment a PARLEY_REDIS_URL names: standalone, Cluster or Sentinel.

    redis://[user:pass@]host:port/db   rediss://...   unix:///path/redis.sock?db=0    standalone
    redis+cluster://[user:pass@]host:port[,host:port...]     (rediss+cluster:// for TLS)   Cluster
    redis+sentinel://[user:pass@]host:port[,host:port...]/<service_name>[/<db>]            Sentinel

A Cluster URL lists startup nodes (one is enough; more survive one being down at start-up); the
client learns the rest of the cluster from them. A Sentinel URL lists the sentinels; the password
in it is the master's (sentinels without auth, as in Redis' default sentinel.conf). Pure parsing:
no connection is made here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class RedisTarget:
    kind: Literal["standalone", "cluster", "sentinel"]
    url: str  # standalone: the URL as given (redis-py parses it); else ""
    nodes: tuple[tuple[str, int], ...] = ()  # cluster startup nodes or sentinels
    service_name: str = ""  # sentinel: the monitored master's name
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """Parse a Redis URL; ValueError with the expected shape on anything else."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("redis", "rediss", "unix"):
        return RedisTarget(kind="standalone", url=url)
    if scheme not in ("redis+cluster", "rediss+cluster", "redis+sentinel"):
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}: use redis://, rediss://, unix://, "
                         "redis+cluster://host:port[,host:port] or redis+sentinel://host:port[,host:port]/service[/db]")
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    if scheme == "redis+sentinel":
        nodes = _nodes(hosts, DEFAULT_SENTINEL_PORT, url)
        path = [unquote(p) for p in parts.path.split("/") if p]
        if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ValueError(f"sentinel URL needs /<service_name>[/<db>] after the sentinels: {_redact(url)}")
        return RedisTarget(kind="sentinel", url="", nodes=nodes, service_name=path[0],
                           db=int(path[1]) if len(path) == 2 else 0,
                           username=unquote(username) or None, password=unquote(password) or None)
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only db 0: {_redact(url)}")
    return RedisTarget(kind="cluster", url="", nodes=_nodes(hosts, DEFAULT_PORT, url),
                       username=unquote(username) or None, password=unquote(password) or None,
                       ssl=scheme == "rediss+cluster")


def _nodes(hosts: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or "]" in port:  # no port, or an IPv6 address in brackets without one
            host, port = item.strip(), ""
        if not host or (port and not port.isdigit()):
            raise ValueError(f"bad host:port {item!r} in Redis URL {_redact(url)}")
        nodes.append((host.strip("[]"), int(port) if port else default_port))
    return tuple(nodes)


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
