"""Every bad request gets a clear 4xx JSON error and leaves the session as it was."""

import pytest


@pytest.fixture
async def snapshot(client, session_id):
    await client.post(f"/v1/sessions/{session_id}/turns", json={"text": "Where is my order A7Q-4412?"})

    async def current():
        return (await client.get(f"/v1/sessions/{session_id}")).json()

    before = await current()
    yield current
    assert await current() == before


BAD_TURNS = [
    ("empty text", {"json": {"text": ""}}, 422, "empty_turn"),
    ("whitespace", {"json": {"text": "   \n "}}, 422, "empty_turn"),
    ("no fields", {"json": {}}, 422, "empty_turn"),
    ("unknown field", {"json": {"txt": "hi"}}, 422, "invalid_request"),
    ("text not a string", {"json": {"text": 42}}, 422, "invalid_request"),
    ("malformed json", {"content": b'{"text": "hi"', "headers": {"content-type": "application/json"}}, 422,
     "invalid_request"),
    ("json array", {"json": ["hi"]}, 422, "invalid_request"),
    ("invalid utf-8", {"content": b'{"text": "\xff\xfe"}', "headers": {"content-type": "application/json"}}, 422,
     "invalid_request"),
    ("null byte", {"json": {"text": "hi\u0000there"}}, 422, "invalid_text"),
    ("text too long", {"json": {"text": "a" * 2001}}, 413, "text_too_long"),
    ("body too large", {"json": {"text": "a" * 3_100_000}}, 413, "payload_too_large"),
    ("plain text body", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
    ("no content type", {"content": b"hello"}, 415, "unsupported_media_type"),
    ("unknown form field", {"data": {"text": "hi", "evil": "x"}}, 422, "invalid_request"),
    ("text sent as a file", {"files": {"text": ("t.txt", b"hi", "text/plain")}}, 422, "invalid_request"),
]


@pytest.mark.parametrize(("case", "request_args", "status", "code"), BAD_TURNS, ids=[c[0] for c in BAD_TURNS])
async def test_bad_turn_is_refused_and_changes_nothing(client, session_id, snapshot, case, request_args, status, code):
    response = await client.post(f"/v1/sessions/{session_id}/turns", **request_args)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


async def test_turn_on_unknown_session_is_404(client):
    response = await client.post("/v1/sessions/" + "f" * 32 + "/turns", json={"text": "hi"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"


async def test_chunked_body_over_the_limit_is_413(client, session_id, snapshot):
    async def chunks():
        for _ in range(310):
            yield b"x" * 10_000

    response = await client.post(
        f"/v1/sessions/{session_id}/turns", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_unknown_route_and_method_use_the_error_shape(client):
    missing = await client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await client.put("/v1/sessions")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
