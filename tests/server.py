"""Run `parley serve` as a real process for tests that need real HTTP, and clean up test keys in Redis."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis
from redis.cluster import ClusterNode
from redis.sentinel import Sentinel

from app.store.url import parse_redis_url


# Every rate limit off, for tests that put load on a server on purpose (app/security/ratelimit.py has tests of its own).
NO_RATE_LIMITS = {
    "PARLEY_RATE_LIMIT_PER_MIN": "0", "PARLEY_TURN_RATE_LIMIT_PER_MIN": "0", "PARLEY_CLIENT_RATE_LIMIT_PER_MIN": "0",
    "PARLEY_CLIENT_TURN_RATE_LIMIT_PER_MIN": "0", "PARLEY_SESSION_TURN_RATE_LIMIT_PER_MIN": "0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_prefix() -> str:
    """A Redis key prefix no other test (or test run) uses."""
    return f"parley-test-{uuid.uuid4().hex}"


def sync_client(redis_url: str) -> redis.Redis | redis.RedisCluster:
    """A blocking client for any URL `app.store.redis.connect` takes (standalone, Cluster or Sentinel)."""
    target = parse_redis_url(redis_url)
    if target.kind == "standalone":
        return redis.Redis.from_url(redis_url)
    auth = {"username": target.username, "password": target.password}
    if target.kind == "cluster":
        return redis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes], ssl=target.ssl, **auth)
    return Sentinel(list(target.nodes)).master_for(target.service_name, db=target.db, **auth)


def wait_until(
    ready: Callable[[], bool], *, process: subprocess.Popen, timeout_s: float, what: str,
    log: Path | None = None, interval_s: float = 0.05,
) -> None:
    """Poll `ready` until it is true; a probe that cannot connect yet counts as not ready. RuntimeError naming
    `what` (with the tail of `log`) when `process` exits or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except (httpx.TransportError, redis.RedisError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = f":\n{log.read_text()[-2000:]}" if log is not None and log.exists() else ""
            raise RuntimeError(f"{what} did not come up (exit code {process.poll()}, waited up to {timeout_s} s){tail}")
        time.sleep(interval_s)


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key under `prefix:` (on a Cluster: SCAN runs on every primary, DEL is split by slot)."""
    with sync_client(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)


def write_session(
    redis_url: str, prefix: str, *, tenant: str, state: dict, history: list[dict], schema: str | None,
) -> str:
    """A session written straight into Redis in a given format version (None: before the schema field
    existed), one turn per two history entries, as a Parley of that version would have stored it; its id."""
    session_id = uuid.uuid4().hex
    base = f"{prefix}:{{{tenant}:{session_id}}}"
    meta = {"created_at": "2026-06-01T09:00:00.000Z", "metadata": json.dumps({"channel": "web"}),
            "turns": len(history) // 2}
    if schema is not None:
        meta["schema"] = schema
    with sync_client(redis_url) as client:
        client.hset(f"{base}:meta", mapping=meta)
        client.set(f"{base}:state", json.dumps(state))
        if history:
            client.rpush(f"{base}:history", *(json.dumps(e) for e in history))
    return session_id


@contextmanager
def parley_test_server(
    redis_url: str, *, log_dir: Path, env: dict[str, str] | None = None, ready_timeout_s: float = 180,
    args: tuple[str, ...] = (),
) -> Iterator[str]:
    """`parley_server` on `redis_url` under a key prefix of its own; every key under it is deleted afterwards."""
    prefix = unique_prefix()
    settings = {**(env or {}), "PARLEY_REDIS_URL": redis_url, "PARLEY_REDIS_PREFIX": prefix}
    try:
        with parley_server(settings, log_path=log_dir / "server.log", ready_timeout_s=ready_timeout_s,
                           args=args) as base:
            yield base
    finally:
        delete_prefix(redis_url, prefix)


@contextmanager
def parley_server(
    env: dict[str, str], *, log_path: Path, ready_timeout_s: float = 180, args: tuple[str, ...] = ()
) -> Iterator[str]:
    """Start the server with PARLEY_* settings from `env` (and `parley serve` options `args`); yield its
    base URL once /readyz is 200."""
    port = free_port()
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, process, ready_timeout_s, log_path)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def _wait_ready(base: str, process: subprocess.Popen, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            ready = httpx.get(f"{base}/readyz", timeout=2)
        except httpx.TransportError:
            ready = None
        if ready is not None and ready.status_code == 200:
            return
        if ready is not None and any(m["status"] == "failed" for m in ready.json()["models"]):
            raise RuntimeError(f"a model failed to load: {ready.text}")
        time.sleep(0.5)
    raise TimeoutError(f"server not ready after {timeout_s} s:\n{log_path.read_text()[-3000:]}")


@contextmanager
def parley_replicas(
    redis_url: str, count: int, *, log_dir: Path, env: dict[str, str] | None = None, ready_timeout_s: float = 180
) -> Iterator[list[str]]:
    """`count` `parley serve` processes on one Redis and one key prefix of their own, started side by side;
    yields their base URLs once every /readyz is 200; every key under the prefix is deleted afterwards."""
    prefix = unique_prefix()
    settings = {**(env or {}), "PARLEY_REDIS_URL": redis_url, "PARLEY_REDIS_PREFIX": prefix}
    started: list[tuple[subprocess.Popen, str, Path]] = []
    logs = []
    try:
        for i in range(count):
            port = free_port()
            log_path = log_dir / f"server-{i}.log"
            log = open(log_path, "wb")  # closed in finally
            logs.append(log)
            command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
            process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1", **settings},
                                       stdout=log, stderr=log)
            started.append((process, f"http://127.0.0.1:{port}", log_path))
        for process, base, log_path in started:
            _wait_ready(base, process, ready_timeout_s, log_path)
        yield [base for _, base, _ in started]
    finally:
        for process, _, _ in started:
            process.terminate()
        for process, _, _ in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for log in logs:
            log.close()
        delete_prefix(redis_url, prefix)


class RedisProcess:
    """A redis-server of a test's own on 127.0.0.1:`port`, data in `directory` (AOF, fsync always),
    so it can be paused (SIGSTOP/SIGCONT), killed and restarted on the same port with its data."""

    def __init__(self, directory: Path, port: int | None = None, *, extra_args: tuple[str, ...] = ()) -> None:
        self.directory, self.port = directory, port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.extra_args = extra_args  # later options win over the defaults above them

    def start(self, timeout_s: float = 10) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                   "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no",
                   "--logfile", str(self.directory / "redis.log"), *self.extra_args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5) as c:
                return bool(c.ping())

        wait_until(answers, process=self.process, timeout_s=timeout_s, what=f"redis-server on port {self.port}",
                   log=self.directory / "redis.log")

    def shutdown(self) -> None:
        """A clean stop, as `docker compose stop` gives: SHUTDOWN (Redis writes and fsyncs its AOF first)."""
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5) as client:
            client.shutdown()
        self.process.wait(timeout=10)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """A crash: SIGKILL (writes acknowledged before it are in the AOF: appendfsync always)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def redis_cluster(directory: Path, masters: int = 3, timeout_s: float = 20) -> Iterator[str]:
    """A Redis Cluster of `masters` primaries (no replicas) on free local ports; yields its
    redis+cluster:// URL once every node reports cluster_state:ok, and kills the nodes afterwards."""
    nodes = []
    for i in range(masters):
        node_dir = directory / f"node-{i}"
        node_dir.mkdir()
        nodes.append(RedisProcess(node_dir, extra_args=(
            "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-port", str(free_port()),  # the default, port + 10000, may be taken or past 65535
            "--cluster-node-timeout", "2000", "--appendonly", "no")))
    try:
        for node in nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        for node in nodes:
            with redis.Redis(port=node.port) as client:
                while client.cluster("info")["cluster_state"] != "ok":
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"cluster not ok after {timeout_s} s")
                    time.sleep(0.05)
        yield "redis+cluster://" + ",".join(addresses)
    finally:
        for node in nodes:
            node.kill()


@contextmanager
def redis_sentinel(directory: Path, service: str = "parley-master", timeout_s: float = 20) -> Iterator[str]:
    """One redis-server master watched by one `redis-server --sentinel` on free local ports; yields the
    redis+sentinel:// URL once the sentinel names the master, and kills both afterwards."""
    master = RedisProcess(directory, extra_args=("--appendonly", "no"))
    sentinel_port = free_port()
    config = directory / "sentinel.conf"  # a sentinel rewrites its config file, so it must be its own
    config.write_text(f"port {sentinel_port}\nbind 127.0.0.1\nprotected-mode no\ndir {directory}\n"
                      f"sentinel monitor {service} 127.0.0.1 {master.port} 1\n")
    sentinel = None
    try:
        master.start()
        sentinel = subprocess.Popen(["redis-server", str(config), "--sentinel"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def names_the_master() -> bool:
            with redis.Redis(port=sentinel_port, socket_timeout=0.5, decode_responses=True) as client:
                return bool(client.sentinel_get_master_addr_by_name(service))

        wait_until(names_the_master, process=sentinel, timeout_s=timeout_s, what=f"sentinel on port {sentinel_port}")
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/{service}/0"
    finally:
        if sentinel is not None:
            sentinel.kill()
            sentinel.wait(timeout=10)
        master.kill()
