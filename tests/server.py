"""Run `parley serve` as a real process for tests that need real HTTP, and clean up test keys in Redis."""

import os
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
