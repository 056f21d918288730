"""API keys: 401 without a right key, one tenant cannot see another's sessions, keys never leak."""

import hashlib
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from app.config import Settings
from app.security.auth import open_mode_warning
from tests.api.inprocess import in_process_client
from tests.server import unique_prefix

KEY_A, KEY_B = "pk-alpha-9f2c1e7d", "pk-beta-41aa09b3"
FILE_KEY = "pk-filed-7c0d55e2"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
async def keyed(api_settings) -> AsyncIterator[httpx.AsyncClient]:
    settings = api_settings.model_copy(update={
        "api_keys": SecretStr(f"{KEY_A}:alpha, {KEY_B}:beta"), "redis_prefix": unique_prefix(),
        "rate_limit_per_min": 600,
    })
    async with in_process_client(settings) as client:
        yield client


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_open_mode_needs_no_header(client, api_settings):
    assert open_mode_warning(api_settings.accepted_api_keys()) is not None
    response = await client.post("/v1/sessions")
    assert response.status_code == 201
    assert (await client.get(f"/v1/sessions/{response.json()['id']}")).status_code == 200


async def test_no_or_wrong_key_is_401_and_the_right_key_works(keyed):
    assert_unauthorized(await keyed.post("/v1/sessions"))
    assert_unauthorized(await keyed.post("/v1/sessions", headers=bearer("pk-nope")))
    assert_unauthorized(await keyed.post("/v1/sessions", headers={"Authorization": f"Basic {KEY_A}"}))
    assert_unauthorized(await keyed.post("/v1/sessions", headers={"Authorization": "Bearer "}))
    assert_unauthorized(await keyed.get("/v1/sessions/" + "a" * 32))
    created = await keyed.post("/v1/sessions", headers=bearer(KEY_A))
    assert created.status_code == 201
    assert created.headers["X-RateLimit-Limit"] == "600"
    assert_unauthorized(await keyed.post(f"/v1/sessions/{created.json()['id']}/turns", json={"text": "hi"}))


async def test_ops_endpoints_stay_open(keyed):
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert (await keyed.get(path)).status_code == 200, path


async def test_a_tenant_cannot_reach_another_tenants_session(keyed):
    sid = (await keyed.post("/v1/sessions", headers=bearer(KEY_A))).json()["id"]
    turn = await keyed.post(f"/v1/sessions/{sid}/turns", json={"text": "my order is A7Q-4412"}, headers=bearer(KEY_A))
    assert turn.status_code == 200
    before = (await keyed.get(f"/v1/sessions/{sid}", headers=bearer(KEY_A))).json()

    for method, url, body in [
        ("GET", f"/v1/sessions/{sid}", None),
        ("GET", f"/v1/sessions/{sid}/state", None),
        ("POST", f"/v1/sessions/{sid}/turns", {"text": "hello"}),
        ("DELETE", f"/v1/sessions/{sid}", None),
    ]:
        response = await keyed.request(method, url, json=body, headers=bearer(KEY_B))
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["code"] == "session_not_found"

    after = await keyed.get(f"/v1/sessions/{sid}", headers=bearer(KEY_A))
    assert after.status_code == 200 and after.json() == before


async def test_hashed_keys_file_and_keys_stay_out_of_logs_and_errors(api_settings, tmp_path, caplog):
    digest = hashlib.sha256(FILE_KEY.encode()).hexdigest()  # = printf %s KEY | sha256sum
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# tenant gamma\n\n{digest}:gamma\n")
    settings = api_settings.model_copy(update={
        "api_keys": SecretStr(f"{KEY_A}:alpha"), "api_keys_file": keys_file, "redis_prefix": unique_prefix(),
        "log_level": "DEBUG",
    })
    assert open_mode_warning(settings.accepted_api_keys()) is None
    caplog.set_level(logging.DEBUG)
    bodies = []
    async with in_process_client(settings) as client:
        created = await client.post("/v1/sessions", headers=bearer(FILE_KEY))
        assert created.status_code == 201
        sid = created.json()["id"]
        assert (await client.get(f"/v1/sessions/{sid}", headers=bearer(FILE_KEY))).status_code == 200
        assert (await client.get(f"/v1/sessions/{sid}", headers=bearer(KEY_A))).status_code == 404
        for headers in (bearer(FILE_KEY + "x"), bearer(digest), {"Authorization": FILE_KEY}):  # the digest is no key
            response = await client.get(f"/v1/sessions/{sid}", headers=headers)
            assert_unauthorized(response)
            bodies.append(response.text)
        bodies.append((await client.get(f"/v1/sessions/{sid}", headers=bearer(KEY_A))).text)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for key in (FILE_KEY, KEY_A):
        assert key not in logged
        assert all(key not in body for body in bodies)
    assert FILE_KEY not in repr(settings) and KEY_A not in repr(settings)


@pytest.mark.parametrize("value, complaint", [
    (f"{KEY_A}:bad tenant", "not a valid tenant name"),
    (f"{KEY_A}:{{x}}", "not a valid tenant name"),
    (f"{KEY_A}", "not of the form key:tenant"),
    (f"{KEY_A}:a,{KEY_A}:b", "more than once"),
])
def test_bad_key_lists_fail_at_load_without_showing_the_key(monkeypatch, value, complaint):
    monkeypatch.setenv("PARLEY_API_KEYS", value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert complaint in str(info.value)
    assert KEY_A not in str(info.value)


def test_bad_keys_file_line_fails_at_load(tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"{FILE_KEY}:gamma\n")  # a plain key where its digest belongs
    with pytest.raises(ValidationError) as info:
        Settings(api_keys_file=keys_file)
    assert "sha256hex:tenant" in str(info.value) and FILE_KEY not in str(info.value)
    with pytest.raises(ValidationError, match="cannot be read"):
        Settings(api_keys_file=tmp_path / "missing")


def test_keys_map_to_tenants(api_settings):
    keys = api_settings.model_copy(update={"api_keys": SecretStr("k:1:alpha,k2:beta")}).accepted_api_keys()
    assert keys.tenant_for("k:1") == "alpha" and keys.tenant_for("k2") == "beta"
    assert keys.tenant_for("k") is None and keys.tenant_for("") is None
    assert api_settings.accepted_api_keys().open


async def test_openai_routes_need_the_key_and_keep_tenants_apart(keyed):
    chat = {"model": "parley", "messages": [{"role": "user", "content": "hello"}]}
    for response in (await keyed.get("/v1/models"), await keyed.post("/v1/chat/completions", json=chat)):
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json() == {"error": {"message": response.json()["error"]["message"],
                                             "type": "authentication_error", "param": None, "code": "unauthorized"}}
    assert (await keyed.get("/v1/models", headers=bearer(KEY_A))).status_code == 200
    sid = (await keyed.post("/v1/sessions", headers=bearer(KEY_A))).json()["id"]
    other = await keyed.post("/v1/chat/completions", json=chat, headers={**bearer(KEY_B), "X-Session-Id": sid})
    assert other.status_code == 404 and other.json()["error"]["code"] == "session_not_found"
    own = await keyed.post("/v1/chat/completions", json=chat, headers={**bearer(KEY_A), "X-Session-Id": sid})
    assert own.status_code == 200 and own.json()["parley"]["turn"] == 1
