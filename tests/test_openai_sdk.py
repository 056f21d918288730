"""The OpenAI-compatible API driven by the official `openai` package against a real `parley serve` process,
plus what that process logs and measures, and the README's tested examples. One server for the module."""

import base64
import http.server
import io
import json
import threading
import time
import wave

import httpx
import openai
import pytest

from tests.factories import tiny_causal_lm
from tests.readme import runnable_examples
from tests.samples import document, encoded, speech_wav
from tests.server import free_port, parley_test_server

RECEIPT_PNG = encoded(document(["ACME STORE", "Order No: A7Q-4412", "Total: $37.50"]))
EMAIL = "jane.doe@example.com"
IMAGE_TIMEOUT_S = 1


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.fixture(scope="module")
def image_host():
    """A plain local HTTP server with the receipt at /receipt.png and a too-large file at /big.png."""
    files = {"/receipt.png": RECEIPT_PNG, "/big.png": b"\x89PNG" + b"0" * 300_000, "/slow.png": RECEIPT_PNG}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            if self.path == "/slow.png":
                time.sleep(IMAGE_TIMEOUT_S + 1)
            body = files.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def server_run(redis_url, tmp_path_factory, image_host):
    decoder = tiny_causal_lm(tmp_path_factory.mktemp("decoder"))
    log_dir = tmp_path_factory.mktemp("log")
    env = {
        "PARLEY_DECODER": str(decoder), "PARLEY_DECODER_MAX_NEW_TOKENS": "8", "PARLEY_MAX_BODY_BYTES": "2000000",
        "PARLEY_MAX_IMAGE_BYTES": "200000", "PARLEY_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "PARLEY_OPENAI_IMAGE_HOSTS": image_host, "PARLEY_OPENAI_IMAGE_TIMEOUT_S": str(IMAGE_TIMEOUT_S),
        "PARLEY_LOG_FORMAT": "json",
    }
    with parley_test_server(redis_url, log_dir=log_dir, env=env) as base:
        yield base, log_dir / "server.log"


@pytest.fixture(scope="module")
def server(server_run) -> str:
    return server_run[0]


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0, timeout=60)


def new_session(server: str) -> str:
    return httpx.post(f"{server}/v1/sessions").json()["id"]


def ask(client: openai.OpenAI, content, **kwargs):
    return client.chat.completions.create(model="parley", messages=[{"role": "user", "content": content}], **kwargs)


def test_models_lists_parley(client):
    models = client.models.list()
    assert [model.id for model in models.data] == ["parley"]


def test_text_message(client):
    reply = ask(client, "My lamp arrived broken, order A7Q-4412")
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content and reply.choices[0].finish_reason == "stop"
    state = reply.parley["state"]
    assert state["intent"] == "damaged_item" and state["slots"]["order_id"] == "A7Q-4412"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_image_data_url(client):
    reply = ask(client, [{"type": "text", "text": "my lamp arrived broken, here is the receipt"},
                         {"type": "image_url", "image_url": {"url": data_url(RECEIPT_PNG)}}])
    state = reply.parley["state"]
    assert state["slots"]["order_id"] == "A7Q-4412" and state["slot_sources"]["order_id"]["modality"] == "image"


def test_image_url_from_an_allowed_host(client, image_host):
    reply = ask(client, [{"type": "image_url", "image_url": {"url": f"http://{image_host}/receipt.png"}}])
    assert reply.parley["state"]["slots"]["order_id"] == "A7Q-4412"


def test_audio_input(client):
    clip = base64.b64encode(speech_wav("my order number is four five one two")).decode()
    reply = ask(client, [{"type": "text", "text": "I want to check the status of my order"},
                         {"type": "input_audio", "input_audio": {"data": clip, "format": "wav"}}])
    assert reply.parley["state"]["slots"]["order_id"] == "4512"
    assert reply.parley["state"]["slot_sources"]["order_id"]["modality"] == "audio"
    assert "4512" in reply.parley["transcript"].replace(" ", "")


def wav_seconds(data: str) -> float:
    with wave.open(io.BytesIO(base64.b64decode(data))) as wav:
        return wav.getnframes() / wav.getframerate()


def test_spoken_reply_with_audio_modality(client):
    spoken = {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}
    reply = ask(client, "where is my order A7Q-4412?", **spoken)
    message = reply.choices[0].message
    assert message.audio.transcript == message.content and wav_seconds(message.audio.data) > 1
    chunks = list(ask(client, "where is my order A7Q-4412?", stream=True, **spoken))
    audio = [chunk.choices[0].delta.audio for chunk in chunks if chunk.choices and chunk.choices[0].delta.audio]
    assert len(audio) == 1 and wav_seconds(audio[0].data) > 1 and audio[0].transcript
    assert ask(client, "where is my order A7Q-4412?").choices[0].message.audio is None


def test_stateless_folds_earlier_messages(client):
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "My lamp arrived broken"},
        {"role": "assistant", "content": "Sorry to hear that. What is your order number?"},
        {"role": "user", "content": "It's A7Q-4412"},
        {"role": "assistant", "content": "Thanks."},
        {"role": "user", "content": "What was my order number?"},
    ]
    reply = client.chat.completions.create(model="parley", messages=messages)
    assert reply.parley["state"]["turns"] == 3 and reply.parley["state"]["intent"] == "damaged_item"
    assert reply.parley["action"] == "recall" and "A7Q-4412" in reply.choices[0].message.content
    assert reply.parley["session_id"] is None


def test_streaming_joins_to_the_final_reply(client, server):
    session = new_session(server)
    stream = ask(client, "where is my order A7Q-4412?", stream=True, stream_options={"include_usage": True},
                 extra_headers={"X-Session-Id": session})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    finish = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
    assert finish[0].parley["state"]["slots"]["order_id"] == "A7Q-4412"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    stored = httpx.get(f"{server}/v1/sessions/{session}").json()["history"]
    assert content and content == stored[-1]["text"]


def test_stateful_with_x_session_id_shares_the_native_session(client, server):
    session = new_session(server)
    first = ask(client, "My lamp arrived broken", extra_headers={"X-Session-Id": session})
    # A client sends its whole copy of the conversation; with a session only the last message is a new turn.
    copy = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "It's A7Q-4412"}]
    second = client.chat.completions.create(model="parley", messages=copy, extra_headers={"X-Session-Id": session})
    assert (first.parley["turn"], second.parley["turn"]) == (1, 2) and second.parley["session_id"] == session
    native = httpx.get(f"{server}/v1/sessions/{session}").json()
    assert native["state"] == second.parley["state"] and native["state"]["slots"]["order_id"] == "A7Q-4412"
    assert [entry["text"] for entry in native["history"]] == [
        "My lamp arrived broken", first.choices[0].message.content, "It's A7Q-4412", second.choices[0].message.content]
    turn = httpx.post(f"{server}/v1/sessions/{session}/turns", json={"text": "what was my order number?"}).json()
    assert turn["turn"] == 3 and "A7Q-4412" in turn["reply"]


def test_idempotency_key_with_a_session(client, server):
    session = new_session(server)
    headers = {"X-Session-Id": session, "Idempotency-Key": "openai-retry-1"}
    first = ask(client, "where is my order A7Q-4412?", extra_headers=headers)
    again = ask(client, "where is my order A7Q-4412?", extra_headers=headers)
    assert again.choices[0].message.content == first.choices[0].message.content
    assert httpx.get(f"{server}/v1/sessions/{session}/state").json()["turns"] == 1
    with pytest.raises(openai.UnprocessableEntityError) as reused:
        ask(client, "something else", extra_headers=headers)
    assert reused.value.body["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(("content", "error", "code", "words"), [
    ([{"type": "image_url", "image_url": {"url": "https://example.com/receipt.png"}}],
     openai.BadRequestError, "remote_url_refused", "data: URL"),
    ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@@"}}],
     openai.UnprocessableEntityError, "invalid_base64", "not valid base64"),
    ([{"type": "input_audio", "input_audio": {"data": base64.b64encode(b"not audio at all").decode(),
                                              "format": "wav"}}],
     openai.UnprocessableEntityError, "undecodable_audio", "could not decode the audio"),
    ([{"type": "video", "video": {}}], openai.BadRequestError, "invalid_request", "messages.0.content"),
    ("", openai.BadRequestError, "empty_turn", "carries nothing"),
])
def test_bad_message_is_refused_and_the_session_is_unchanged(client, server, content, error, code, words):
    session = new_session(server)
    ask(client, "My lamp arrived broken", extra_headers={"X-Session-Id": session})
    before = httpx.get(f"{server}/v1/sessions/{session}").json()
    with pytest.raises(error) as refused:
        ask(client, content, extra_headers={"X-Session-Id": session})
    assert refused.value.body["code"] == code and words in refused.value.body["message"]
    assert refused.value.body["type"] == "invalid_request_error" and refused.value.body["param"].startswith("messages.0")
    assert httpx.get(f"{server}/v1/sessions/{session}").json() == before


def test_unknown_model_and_unknown_session_are_404(client):
    with pytest.raises(openai.NotFoundError) as model:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert model.value.body["code"] == "model_not_found" and model.value.body["param"] == "model"
    assert "'gpt-4o' is not served here" in model.value.body["message"]
    with pytest.raises(openai.NotFoundError) as session:
        ask(client, "hi", extra_headers={"X-Session-Id": "b" * 32})
    assert session.value.body["code"] == "session_not_found" and session.value.body["type"] == "not_found_error"


def test_oversized_remote_image_and_missing_messages(client, image_host):
    with pytest.raises(openai.APIStatusError) as big:
        ask(client, [{"type": "image_url", "image_url": {"url": f"http://{image_host}/big.png"}}])
    assert big.value.status_code == 413 and big.value.body["code"] == "image_too_large"
    with pytest.raises(openai.BadRequestError) as missing:
        ask(client, [{"type": "image_url", "image_url": {"url": f"http://{image_host}/gone.png"}}])
    assert missing.value.body["code"] == "image_fetch_failed"
    with pytest.raises(openai.BadRequestError) as slow:
        ask(client, [{"type": "image_url", "image_url": {"url": f"http://{image_host}/slow.png"}}])
    assert slow.value.body["code"] == "image_fetch_failed" and "took over 1 s" in slow.value.body["message"]
    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model="parley", messages=[])
    assert empty.value.body["param"] == "messages" and empty.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.APIStatusError) as long:
        client.chat.completions.create(model="parley", messages=[{"role": "user", "content": "hi"}] * 201)
    assert long.value.status_code == 413 and long.value.body["code"] == "too_many_messages"


# What the process logs and measures --------------------------------------------------------------------------


def test_json_logs_carry_the_request_id_and_no_personal_data(server_run):
    server, log_path = server_run
    session = new_session(server)
    response = httpx.post(f"{server}/v1/chat/completions", params={"note": EMAIL},
                          headers={"X-Request-Id": "trace-42", "X-Session-Id": session},
                          json={"model": "parley", "messages": [{"role": "user", "content": f"my email is {EMAIL}"}]})
    assert response.status_code == 200 and response.headers["X-Request-Id"] == "trace-42"
    assert response.json()["parley"]["state"]["slots"]["email"] == EMAIL  # it was understood, and stored...
    generated = httpx.get(f"{server}/healthz", headers={"X-Request-Id": "bad id with spaces"}).headers["X-Request-Id"]
    assert generated != "bad id with spaces" and len(generated) == 32
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert len(lines) > 5 and all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    ours = [line for line in lines if line["request_id"] == "trace-42"]
    assert any(line["logger"] == "parley.access" and line["route"] == "/v1/chat/completions" for line in ours)
    # The completion's log line names the slots it filled, never their values.
    assert any(line["logger"] == "app.api.openai.serving" and "'email'" in line["message"] for line in ours)
    assert EMAIL not in log_path.read_text()  # ...but never logged


def test_metrics_after_the_turns(server, client):
    clip = base64.b64encode(speech_wav("hello there")).decode()
    ask(client, "hello")
    ask(client, [{"type": "text", "text": "my receipt"}, {"type": "image_url", "image_url": {"url": data_url(RECEIPT_PNG)}}])
    ask(client, [{"type": "input_audio", "input_audio": {"data": clip, "format": "wav"}}])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    httpx.get(f"{server}/v1/sessions/{new_session(server)}")
    text = httpx.get(f"{server}/metrics").text
    assert 'parley_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in text
    assert 'parley_http_requests_total{method="POST",route="/v1/chat/completions",status="404"}' in text
    assert 'route="/v1/sessions/{session_id}"' in text  # the template, not the raw path
    for modalities in ("text", "audio", "image+text"):
        assert f'parley_turn_seconds_count{{modalities="{modalities}"}}' in text
    for model in ("text", "speech", "vision", "decoder"):  # reported by the batchers
        assert f'parley_model_inference_seconds_count{{model="{model}"}}' in text
        assert f'parley_model_batch_size_count{{model="{model}"}}' in text
        assert f'parley_queue_depth{{model="{model}"}}' in text


# The README's examples -------------------------------------------------------------------------------------------


EXAMPLES = runnable_examples()


def test_readme_has_runnable_examples():
    languages = [language for language, _, _ in EXAMPLES]
    assert languages.count("sh") >= 3 and languages.count("python") >= 2


@pytest.mark.parametrize(("language", "code", "expected"), EXAMPLES,
                         ids=[f"{lang}-{n}" for n, (lang, _, _) in enumerate(EXAMPLES)])
def test_readme_example_runs(server, language, code, expected, tmp_path):
    import subprocess
    import sys

    (tmp_path / "receipt.png").write_bytes(RECEIPT_PNG)
    (tmp_path / "question.wav").write_bytes(speech_wav("my order number is four five one two"))
    code = code.replace("http://localhost:8000", server).replace("localhost:8000", server)
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "sh" else [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert expected in done.stdout and '"error"' not in done.stdout, done.stdout
