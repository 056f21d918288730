import asyncio
import json

import httpx


async def turn(client, session_id, text):
    response = await client.post(f"/v1/sessions/{session_id}/turns", json={"text": text})
    assert response.status_code == 200, response.text
    return response.json()


async def test_four_turn_conversation_tracks_intent_and_slots(client, session_id):
    first = await turn(client, session_id, "Hi there!")
    assert first["turn"] == 1 and first["state"]["intent"] == "greeting"

    second = await turn(client, session_id, "My lamp arrived broken")
    assert second["state"]["intent"] == "damaged_item"
    assert second["state"]["slots"]["product"] == "lamp"
    assert second["action"] == "ask_slot" and second["state"]["requested_slot"] == "order_id"
    assert "order" in second["reply"].lower()

    third = await turn(client, session_id, "It's A7Q-4412")
    assert third["state"]["intent"] == "damaged_item"
    assert third["state"]["slots"]["order_id"] == "A7Q-4412"
    assert third["state"]["slot_sources"]["order_id"] == {"modality": "text", "turn": 3, "confidence": 0.95}
    assert third["state"]["slots"]["product"] == "lamp"  # kept from turn 2

    fourth = await turn(client, session_id, "What was my order number?")
    assert fourth["state"]["intent"] == "damaged_item"
    assert "A7Q-4412" in fourth["reply"]
    assert fourth["turn"] == 4

    history = (await client.get(f"/v1/sessions/{session_id}")).json()["history"]
    assert [(h["role"], h["turn"]) for h in history] == [
        (role, n) for n in range(1, 5) for role in ("user", "assistant")
    ]
    assert history[4]["text"] == "It's A7Q-4412" and history[4]["modalities"] == ["text"]
    assert history[-1]["text"] == fourth["reply"]


async def test_spoken_digits_fill_the_requested_slot(client, session_id):
    await turn(client, session_id, "I want to know where my order is")
    result = await turn(client, session_id, "four five one two")
    assert result["state"]["slots"]["order_id"] == "4512"


async def test_slot_is_overwritten_when_the_user_changes_it(client, session_id):
    await turn(client, session_id, "Where is my order A7Q-4412?")
    result = await turn(client, session_id, "Sorry, the order number is actually KX-90817")
    assert result["state"]["slots"]["order_id"] == "KX-90817"
    assert result["state"]["slot_sources"]["order_id"]["turn"] == 2


async def test_asking_for_a_person_hands_off(client, session_id):
    result = await turn(client, session_id, "I want to talk to a real human agent")
    assert result["state"]["handed_off"] is True and result["action"] == "handoff"
    later = await turn(client, session_id, "hello?")
    assert later["state"]["handed_off"] is True and later["action"] == "handoff"


async def test_multipart_text_turn(client, session_id):
    response = await client.post(f"/v1/sessions/{session_id}/turns", data={"text": "Where is order A7Q-4412?"})
    assert response.status_code == 200
    assert response.json()["state"]["slots"]["order_id"] == "A7Q-4412"


async def test_streamed_turn_sends_tokens_then_the_full_response(client, session_id):
    async with client.stream("POST", f"/v1/sessions/{session_id}/turns?stream=true", json={"text": "hello"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join([chunk async for chunk in response.aiter_text()])
    events = [block.split("\n", 1) for block in body.strip().split("\n\n")]
    names = [name.removeprefix("event: ") for name, _ in events]
    assert names[-1] == "done" and names[0] == "token" and set(names[:-1]) <= {"token", "replace"}
    done = json.loads(events[-1][1].removeprefix("data: "))
    # The tiny random decoder writes nonsense: the policy's wording replaces it, announced before done.
    assert done["grounded"] is False and names[-2] == "replace"
    assert json.loads(events[-2][1].removeprefix("data: ")) == {"text": done["reply"]}
    assert done["turn"] == 1 and done["state"]["turns"] == 1


async def test_stream_by_accept_header_and_early_error_is_plain_json(client):
    response = await client.post(
        "/v1/sessions/" + "0" * 32 + "/turns", json={"text": "hi"}, headers={"Accept": "text/event-stream"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_not_found"


async def test_concurrent_turns_of_one_session_are_serialised(client, session_id):
    texts = [f"my email is user{i}@example.com" for i in range(6)]
    results = await asyncio.gather(*(turn(client, session_id, t) for t in texts))
    assert sorted(r["turn"] for r in results) == list(range(1, 7))
    history = (await client.get(f"/v1/sessions/{session_id}")).json()["history"]
    users = [h for h in history if h["role"] == "user"]
    assert [h["turn"] for h in users] == list(range(1, 7))
    assert sorted(h["text"] for h in users) == sorted(texts)
    last = max(results, key=lambda r: r["turn"])
    assert (await client.get(f"/v1/sessions/{session_id}/state")).json() == last["state"]


async def test_a_turn_that_fails_halfway_changes_nothing(app, client, session_id):
    await turn(client, session_id, "My headphones arrived broken, order A7Q-4412")
    before = (await client.get(f"/v1/sessions/{session_id}")).json()

    class BrokenDecoder:
        def stream(self, messages, *, max_new_tokens):
            yield "partial"
            raise RuntimeError("decoder crashed")

    pipeline = app.state.runtime.pipeline
    working, pipeline.decoder = pipeline.decoder, BrokenDecoder()
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley") as raw:
            failed = await raw.post(f"/v1/sessions/{session_id}/turns", json={"text": "my email is a@b.co"})
    finally:
        pipeline.decoder = working
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "internal_error"
    assert (await client.get(f"/v1/sessions/{session_id}")).json() == before
    assert (await turn(client, session_id, "thanks"))["turn"] == 2  # the lock was released
