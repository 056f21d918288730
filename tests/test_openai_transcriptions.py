"""POST /v1/audio/transcriptions driven by the official `openai` package against a real `parley serve` process
with API keys and a request limit: espeak-ng speech comes back as its words, keys and limits as on every /v1
endpoint. Refusals of bad audio are tested in-process (tests/api/test_transcriptions.py)."""

import io
from concurrent.futures import ThreadPoolExecutor
import re

import numpy as np
import openai
import pytest
import soundfile as sf

from tests.factories import tiny_causal_lm
from tests.samples import DIGIT_HOMOPHONES, speech_wav
from tests.server import parley_test_server

KEY, OTHER_KEY = "pk-transcribe-5b1e", "pk-limited-0c7f"
REQUESTS_PER_MIN = 10
SAID = "my order number is four five one two"


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory) -> str:
    env = {
        "PARLEY_DECODER": str(tiny_causal_lm(tmp_path_factory.mktemp("decoder"))),
        "PARLEY_DATA_DIR": str(tmp_path_factory.mktemp("data")), "PARLEY_TTS": "off",
        "PARLEY_API_KEYS": f"{KEY}:alpha,{OTHER_KEY}:beta", "PARLEY_RATE_LIMIT_PER_MIN": str(REQUESTS_PER_MIN),
    }
    with parley_test_server(redis_url, log_dir=tmp_path_factory.mktemp("log"), env=env) as base:
        yield base


def client_for(server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0, timeout=60)


def words(text: str) -> str:
    """Lowercased words, spoken digits as digits, a spelled-out number joined ("for 5 1 2" -> "4512")."""
    found = [DIGIT_HOMOPHONES.get(word, word) for word in re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()]
    return re.sub(r"(?<=\d) (?=\d)", "", " ".join(found))


def test_the_words_come_back(server):
    result = client_for(server, KEY).audio.transcriptions.create(
        model="whisper-1", file=("question.wav", speech_wav(SAID), "audio/wav"))
    assert words(result.text) == "my order number is 4512"


def test_text_and_verbose_json(server):
    client = client_for(server, KEY)
    clip = ("question.wav", speech_wav("I would like a refund please"), "audio/wav")
    text = client.audio.transcriptions.create(model="whisper-1", file=clip, response_format="text", language="en")
    assert isinstance(text, str) and words(text) == "i would like a refund please"
    verbose = client.audio.transcriptions.create(model="whisper-1", file=clip, response_format="verbose_json",
                                                 temperature=0.0, prompt="a customer on the phone")
    assert (verbose.language, verbose.text) == ("english", text)
    assert 1.0 < verbose.duration < 5.0


def test_a_key_is_needed(server):
    with pytest.raises(openai.AuthenticationError) as refused:
        client_for(server, "pk-wrong").audio.transcriptions.create(
            model="whisper-1", file=("q.wav", speech_wav("hello"), "audio/wav"))
    assert refused.value.body["code"] == "unauthorized"


def test_not_audio_is_refused_in_openai_shape(server):
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client_for(server, KEY).audio.transcriptions.create(model="whisper-1", file=("q.wav", b"text", "audio/wav"))
    assert refused.value.body["code"] == "undecodable_audio" and refused.value.body["param"] == "file"


def test_over_the_request_limit_is_429(server):
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(8000, dtype=np.int16), 16000, format="WAV")  # 0.5 s of silence
    client = client_for(server, OTHER_KEY)

    def transcribe(_: int) -> openai.RateLimitError | None:
        try:
            client.audio.transcriptions.create(model="whisper-1", file=("s.wav", buffer.getvalue(), "audio/wav"))
        except openai.RateLimitError as exc:
            return exc
        return None

    # All at once, so that however slowly this machine transcribes, the requests arrive within one window.
    with ThreadPoolExecutor(REQUESTS_PER_MIN * 2) as pool:
        refusals = [exc for exc in pool.map(transcribe, range(REQUESTS_PER_MIN * 2)) if exc is not None]
    assert len(refusals) >= REQUESTS_PER_MIN - 1  # a burst of the limit passes; the rest wait (one may be freed)
    assert all(exc.body["code"] == "rate_limited" and int(exc.response.headers["Retry-After"]) >= 1
               for exc in refusals)
    # The other tenant is not held back.
    assert client_for(server, KEY).audio.transcriptions.create(
        model="whisper-1", file=("s.wav", buffer.getvalue(), "audio/wav")).text == ""
