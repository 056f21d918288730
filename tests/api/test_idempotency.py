"""Idempotency-Key: a retried turn returns the stored reply and never runs twice."""

import asyncio


def turns_url(session_id):
    return f"/v1/sessions/{session_id}/turns"


async def history(client, session_id):
    return (await client.get(f"/v1/sessions/{session_id}")).json()["history"]


async def test_retry_with_the_same_key_returns_the_stored_reply(client, session_id):
    headers = {"Idempotency-Key": "retry-1"}
    first = await client.post(turns_url(session_id), json={"text": "where is order A7Q-4412?"}, headers=headers)
    again = await client.post(turns_url(session_id), json={"text": "where is order A7Q-4412?"}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["replayed"] is False and again.json()["replayed"] is True
    same = ("turn", "reply", "action", "grounded", "transcript", "images", "state")
    assert {k: again.json()[k] for k in same} == {k: first.json()[k] for k in same}
    assert len(await history(client, session_id)) == 2


async def test_the_same_turn_as_a_form_is_the_same_request(client, session_id):
    headers = {"Idempotency-Key": "retry-form"}
    await client.post(turns_url(session_id), json={"text": "hello there"}, headers=headers)
    again = await client.post(turns_url(session_id), files={"text": (None, "hello there")}, headers=headers)
    assert again.status_code == 200 and again.json()["replayed"] is True


async def test_the_same_key_with_another_body_is_refused(client, session_id):
    headers = {"Idempotency-Key": "retry-2"}
    await client.post(turns_url(session_id), json={"text": "hello"}, headers=headers)
    before = await history(client, session_id)
    other = await client.post(turns_url(session_id), json={"text": "something else"}, headers=headers)
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert await history(client, session_id) == before


async def test_concurrent_retries_run_one_turn(client, session_id):
    headers = {"Idempotency-Key": "retry-3"}
    results = await asyncio.gather(*(
        client.post(turns_url(session_id), json={"text": "my email is jo@example.com"}, headers=headers)
        for _ in range(4)
    ))
    assert all(r.status_code == 200 for r in results)
    assert sorted(r.json()["replayed"] for r in results) == [False, True, True, True]
    assert {r.json()["turn"] for r in results} == {1}
    assert len(await history(client, session_id)) == 2


async def test_a_streamed_retry_replays_as_one_done_event(client, session_id):
    headers = {"Idempotency-Key": "retry-4"}
    await client.post(turns_url(session_id), json={"text": "hello"}, headers=headers)
    replay = await client.post(turns_url(session_id) + "?stream=true", json={"text": "hello"}, headers=headers)
    assert replay.status_code == 200 and replay.text.startswith("event: done\n")
    assert '"replayed": true' in replay.text


async def test_malformed_keys_are_refused(client, session_id):
    for key in ("x" * 256, "has space", ""):
        response = await client.post(turns_url(session_id), json={"text": "hi"}, headers={"Idempotency-Key": key})
        assert response.status_code == 422, key
    assert await history(client, session_id) == []
