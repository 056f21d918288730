import pytest

from app.dialogue.state import DialogueState
from tests.server import write_session


async def test_create_returns_id_time_and_empty_state(client):
    response = await client.post("/v1/sessions", json={"metadata": {"channel": "web"}})
    assert response.status_code == 201
    body = response.json()
    assert len(body["id"]) == 32 and body["created_at"].endswith("Z")
    assert body["state"]["slots"] == {} and body["state"]["turns"] == 0
    detail = (await client.get(f"/v1/sessions/{body['id']}")).json()
    assert detail["metadata"] == {"channel": "web"} and detail["history"] == []


async def test_create_without_body(client):
    assert (await client.post("/v1/sessions")).status_code == 201


async def test_get_state_and_delete(client, session_id):
    state = await client.get(f"/v1/sessions/{session_id}/state")
    assert state.status_code == 200 and state.json()["turns"] == 0
    assert (await client.delete(f"/v1/sessions/{session_id}")).status_code == 204
    gone = await client.get(f"/v1/sessions/{session_id}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "session_not_found"
    assert (await client.delete(f"/v1/sessions/{session_id}")).status_code == 404


async def test_unknown_and_malformed_ids_are_404(client):
    for bad in ("0" * 32, "..%2F..%2Fetc", "ABC", "７f3c0b6a9d2e4f1a8b5c6d7e8f9a0b1c"):
        response = await client.get(f"/v1/sessions/{bad}")
        assert response.status_code == 404, bad
        assert set(response.json()["error"]) == {"code", "message"}


async def test_metadata_is_limited(client):
    response = await client.post("/v1/sessions", json={"metadata": {"blob": "x" * 5000}})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "metadata_too_large"


async def test_unknown_create_field_is_422(client):
    response = await client.post("/v1/sessions", json={"meta": {}})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_a_session_stored_before_the_format_version_is_migrated(client, api_settings):
    """A session as a Parley without the schema field stored it is read (and migrated), and takes turns."""
    history = [{"role": "user", "text": "hello", "turn": 1, "at": "2026-06-01T09:00:01.000Z"},
               {"role": "assistant", "text": "Hi! How can I help?", "turn": 1, "at": "2026-06-01T09:00:02.000Z"}]
    state = {**DialogueState().model_dump(), "turns": 1}
    sid = write_session(api_settings.redis_url, api_settings.redis_prefix, tenant="default", state=state,
                        history=history, schema=None)
    detail = await client.get(f"/v1/sessions/{sid}")
    assert detail.status_code == 200, detail.text
    said = [(e["role"], e["text"], e["turn"], e["at"]) for e in detail.json()["history"]]
    assert said == [(e["role"], e["text"], e["turn"], e["at"]) for e in history]
    assert detail.json()["state"]["turns"] == 1
    turn = await client.post(f"/v1/sessions/{sid}/turns", json={"text": "my lamp arrived broken"})
    assert turn.status_code == 200, turn.text
    assert turn.json()["turn"] == 2


@pytest.mark.parametrize(("schema", "status", "says"), [("0", 410, "older Parley"), ("99", 409, "newer Parley")])
async def test_a_session_this_parley_cannot_read_is_a_clear_4xx_not_a_404(client, api_settings, schema, status, says):
    sid = write_session(api_settings.redis_url, api_settings.redis_prefix, tenant="default",
                        state=DialogueState().model_dump(), history=[], schema=schema)
    for method, url, body in [("GET", f"/v1/sessions/{sid}", None), ("GET", f"/v1/sessions/{sid}/state", None),
                              ("POST", f"/v1/sessions/{sid}/turns", {"text": "hello"})]:
        response = await client.request(method, url, json=body)
        assert response.status_code == status, (method, url, response.text)
        error = response.json()["error"]
        assert error["code"] == "session_version_unsupported" and says in error["message"], error
    assert (await client.delete(f"/v1/sessions/{sid}")).status_code == 204  # what the 410 suggests still works
