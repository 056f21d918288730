"""Run `parley serve` as a real process for tests that need real HTTP, and clean up test keys in Redis."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_prefix() -> str:
    """A Redis key prefix no other test (or test run) uses."""
    return f"parley-test-{uuid.uuid4().hex}"


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key under `prefix:`."""
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)


@contextmanager
def parley_test_server(
    redis_url: str, *, log_dir: Path, env: dict[str, str] | None = None, ready_timeout_s: float = 180
) -> Iterator[str]:
    """`parley_server` on `redis_url` under a key prefix of its own; every key under it is deleted afterwards."""
    prefix = unique_prefix()
    settings = {**(env or {}), "PARLEY_REDIS_URL": redis_url, "PARLEY_REDIS_PREFIX": prefix}
    try:
        with parley_server(settings, log_path=log_dir / "server.log", ready_timeout_s=ready_timeout_s) as base:
            yield base
    finally:
        delete_prefix(redis_url, prefix)


@contextmanager
def parley_server(env: dict[str, str], *, log_path: Path, ready_timeout_s: float = 180) -> Iterator[str]:
    """Start the server with PARLEY_* settings from `env`; yield its base URL once /readyz is 200."""
    port = free_port()
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
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

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory, self.port = directory, port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 10) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                   "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no",
                   "--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5) as c:
                    if c.ping():
                        return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} not up after {timeout_s} s")

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
