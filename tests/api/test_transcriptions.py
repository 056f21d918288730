"""POST /v1/audio/transcriptions in-process: refusals in OpenAI's error shape, with the limits of a voice turn.
The official client against a real server is in tests/test_openai_transcriptions.py."""

import io

import numpy as np
import pytest
import soundfile as sf

from tests.samples import speech_wav

URL = "/v1/audio/transcriptions"


def silence_wav(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * rate), dtype=np.int16), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def assert_openai_error(response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    assert error["type"] == "invalid_request_error" and error["param"] == param
    return error


async def test_text_and_verbose_formats(client):
    wav = speech_wav("my order number is four five one two")
    text = await client.post(URL, files={"file": ("q.wav", wav, "audio/wav")}, data={"response_format": "text"})
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert "order number" in text.text.lower()
    verbose = await client.post(URL, files={"file": ("q.wav", wav, "audio/wav")},
                                data={"response_format": "verbose_json", "language": "en", "model": "whisper-1",
                                      "prompt": "an order number", "temperature": "0.2"})
    assert verbose.status_code == 200, verbose.text
    body = verbose.json()
    assert (body["task"], body["language"], body["text"]) == ("transcribe", "english", text.text)
    assert body["duration"] == pytest.approx(len(sf.read(io.BytesIO(wav))[0]) / 22050, abs=0.01)


async def test_missing_file_is_400(client):
    response = await client.post(URL, data={"model": "whisper-1"})
    assert "Field required" in assert_openai_error(response, 400, "invalid_request", "file")["message"]
    as_text = await client.post(URL, data={"file": "not a file part"})
    assert_openai_error(as_text, 400, "invalid_request", "file")


async def test_non_audio_bytes_are_422(client):
    response = await client.post(URL, files={"file": ("notes.wav", b"these are not audio samples", "audio/wav")})
    assert "could not decode the audio" in assert_openai_error(response, 422, "undecodable_audio", "file")["message"]
    empty = await client.post(URL, files={"file": ("empty.wav", b"", "audio/wav")})
    assert_openai_error(empty, 422, "empty_audio", "file")


async def test_too_long_audio_is_413(client, api_settings):
    clip = silence_wav(api_settings.max_audio_seconds + 1)
    response = await client.post(URL, files={"file": ("long.wav", clip, "audio/wav")})
    assert "the limit is 60 s" in assert_openai_error(response, 413, "audio_too_long", "file")["message"]


async def test_too_big_body_is_413(client, api_settings):
    response = await client.post(URL, files={"file": ("big.wav", b"\0" * (api_settings.max_body_bytes + 1), "audio/wav")})
    assert_openai_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(("field", "value", "code"), [
    ("language", "de", "unsupported_language"),
    ("response_format", "srt", "invalid_request"),
    ("temperature", "1.5", "invalid_request"),
])
async def test_unsupported_options_are_400(client, field, value, code):
    response = await client.post(URL, files={"file": ("q.wav", silence_wav(1), "audio/wav")}, data={field: value})
    assert_openai_error(response, 400, code, field)


async def test_a_json_body_is_400_not_a_crash(client):
    response = await client.post(URL, json={"file": "aGVsbG8=", "model": "whisper-1"})
    assert_openai_error(response, 400, "invalid_request", "file")
