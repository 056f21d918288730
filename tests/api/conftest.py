"""One app for the API tests: real Redis, real MiniLM text encoder, a tiny random decoder.

The tiny decoder writes nonsense, so replies come from the policy's fallback:
these tests check plumbing and state, not wording.
"""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.factories import tiny_causal_lm
from tests.api.inprocess import asgi_client, in_process_app
from tests.server import unique_prefix


@pytest.fixture(scope="session")
def tiny_decoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_causal_lm(tmp_path_factory.mktemp("tiny-decoder")))


@pytest.fixture(scope="session")
def api_settings(redis_url: str, tiny_decoder: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        redis_url=redis_url, redis_prefix=unique_prefix(), decoder=tiny_decoder,
        decoder_max_new_tokens=8, data_dir=tmp_path_factory.mktemp("data"), max_body_bytes=3_000_000,
        max_text_chars=2000, lock_wait_ms=2000,
        rate_limit_per_min=0, turn_rate_limit_per_min=0,  # limits have tests of their own
        client_rate_limit_per_min=0, client_turn_rate_limit_per_min=0, session_turn_rate_limit_per_min=0,
    )


@pytest.fixture(scope="session")
async def app(api_settings: Settings) -> AsyncIterator[FastAPI]:
    async with in_process_app(api_settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as http:
        yield http


@pytest.fixture
async def session_id(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/sessions")
    assert response.status_code == 201
    return response.json()["id"]
