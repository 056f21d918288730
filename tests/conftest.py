"""Shared fixtures: a real Redis (the local server, else an embedded one) and a store per test."""

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

from app.store.embedded import EmbeddedRedis
from app.store.redis import RedisSessionStore, close_client, connect
from tests.server import delete_prefix, redis_cluster, unique_prefix

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


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3-primary Redis Cluster of this test run's own (started on first use, ~2 s)."""
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as url:
        yield url


@pytest.fixture
def store_url(redis_url: str) -> str:
    """The Redis the `store` fixtures use; tests/test_store.py runs its tests on standalone and Cluster."""
    return redis_url


@pytest.fixture
async def redis_client(store_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = connect(store_url)
    yield client
    await close_client(client)


@pytest.fixture
def store_prefix(store_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = unique_prefix()
    yield prefix
    delete_prefix(store_url, prefix)


@pytest.fixture
def store(redis_client: redis.asyncio.Redis, store_prefix: str) -> RedisSessionStore:
    return RedisSessionStore(redis_client, prefix=store_prefix)
