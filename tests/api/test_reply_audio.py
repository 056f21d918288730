"""Spoken replies through the API: JSON and form requests, the streamed done event, idempotent replays."""

import base64
import io
import json
import wave

from tests.samples import heard


def turns_url(session_id):
    return f"/v1/sessions/{session_id}/turns"


def wav_seconds(reply_audio: dict) -> float:
    assert reply_audio["mime_type"] == "audio/wav"
    with wave.open(io.BytesIO(base64.b64decode(reply_audio["data"]))) as wav:
        return wav.getnframes() / wav.getframerate()


async def test_spoken_reply_says_what_the_reply_says(app, client, session_id):
    response = await client.post(turns_url(session_id), json={"text": "my order number is 4512", "reply_audio": True})
    assert response.status_code == 200
    body = response.json()
    assert "4512" in body["reply"]  # the policy acknowledges the order number (the tiny decoder's words fail grounding)
    words = heard(app.state.runtime.pipeline.encoders.media["audio"], base64.b64decode(body["reply_audio"]["data"]))
    assert "4512" in words.split() and "order" in words.split(), words


async def test_the_voice_is_listed_as_a_model(client):
    models = {model["name"]: model for model in (await client.get("/readyz")).json()["models"]}
    assert models["tts"]["status"] == "ready" and models["tts"]["source"].startswith(("piper", "espeak-ng"))


async def test_no_audio_unless_asked(client, session_id):
    response = await client.post(turns_url(session_id), json={"text": "hello"})
    assert response.status_code == 200 and response.json()["reply_audio"] is None


async def test_form_field_asks_for_audio(client, session_id):
    spoken = await client.post(turns_url(session_id), files={"text": (None, "hello"), "reply_audio": (None, "true")})
    assert spoken.status_code == 200 and wav_seconds(spoken.json()["reply_audio"]) > 0.5
    silent = await client.post(turns_url(session_id), files={"text": (None, "hello"), "reply_audio": (None, "false")})
    assert silent.status_code == 200 and silent.json()["reply_audio"] is None


async def test_bad_flag_is_refused_and_nothing_is_written(client, session_id):
    form = await client.post(turns_url(session_id), files={"text": (None, "hello"), "reply_audio": (None, "maybe")})
    assert form.status_code == 422 and "reply_audio" in form.json()["error"]["message"]
    as_json = await client.post(turns_url(session_id), json={"text": "hello", "reply_audio": "loud"})
    assert as_json.status_code == 422
    assert (await client.get(f"/v1/sessions/{session_id}")).json()["history"] == []


async def test_streamed_done_event_carries_the_audio(client, session_id):
    response = await client.post(turns_url(session_id) + "?stream=true", json={"text": "hello", "reply_audio": True})
    assert response.status_code == 200
    events = [block.split("\n", 1) for block in response.text.strip().split("\n\n")]
    name, data = events[-1]
    assert name == "event: done"
    assert wav_seconds(json.loads(data.removeprefix("data: "))["reply_audio"]) > 0.5


async def test_replay_speaks_the_stored_reply_again_and_the_flag_is_part_of_the_request(app, client, session_id):
    headers = {"Idempotency-Key": "spoken-1"}
    first = await client.post(turns_url(session_id), json={"text": "hello", "reply_audio": True}, headers=headers)
    # The stored record keeps the words, not a megabyte of WAV for a day.
    stored = await app.state.runtime.store.get_idempotent("default", session_id, "spoken-1")
    assert stored.response["reply"] == first.json()["reply"] and "reply_audio" not in stored.response
    again = await client.post(turns_url(session_id), json={"text": "hello", "reply_audio": True}, headers=headers)
    assert again.json()["replayed"] and again.json()["reply"] == first.json()["reply"]
    # The same words spoken again (Piper varies a little from run to run, so not byte for byte).
    assert abs(wav_seconds(again.json()["reply_audio"]) - wav_seconds(first.json()["reply_audio"])) < 0.5
    silent = await client.post(turns_url(session_id), json={"text": "hello"}, headers=headers)
    assert silent.status_code == 422 and silent.json()["error"]["code"] == "idempotency_key_reused"
