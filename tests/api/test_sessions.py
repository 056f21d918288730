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
