"""Shared fixtures: a real Redis (the local server, else an embedded one) and a store per test."""

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

from app.store import EmbeddedRedis, RedisSessionStore, connect
from tests.server import delete_prefix, unique_prefix

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The local Redis if it answers a PING within 1 s, else an embedded redis-server."""
    try:
        redis.Redis.from_url(LOCAL_REDIS_URL, socket_timeout=1, socket_connect_timeout=1).ping()
    except redis.RedisError:
        server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
        yield server.url
        server.close()
    else:
        yield LOCAL_REDIS_URL


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def store_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = unique_prefix()
    yield prefix
    delete_prefix(redis_url, prefix)


@pytest.fixture
def store(redis_client: redis.asyncio.Redis, store_prefix: str) -> RedisSessionStore:
    return RedisSessionStore(redis_client, prefix=store_prefix)
