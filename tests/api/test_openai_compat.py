"""The OpenAI-compatible routes in-process: errors in OpenAI's shape from every layer, the native shape elsewhere.
The SDK-driven tests against a real server are in tests/test_openai_sdk.py."""

import json

import pytest

from app.api.errors import error_response
from app.api.openai.serving import decoder_name

OPENAI_FIELDS = {"message", "type", "param", "code"}


def openai_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == OPENAI_FIELDS and error["code"] == code and error["message"]
    return error


async def test_body_over_the_limit_is_413_in_openai_shape(client, api_settings):
    big = b'{"model": "parley", "messages": [], "pad": "' + b"x" * api_settings.max_body_bytes + b'"}'
    error = openai_error(await client.post("/v1/chat/completions", content=big,
                                           headers={"content-type": "application/json"}), 413, "payload_too_large")
    assert error["type"] == "invalid_request_error"
    native = await client.post("/v1/sessions", content=big, headers={"content-type": "application/json"})
    assert native.status_code == 413 and set(native.json()["error"]) == {"code", "message"}


@pytest.mark.parametrize(("body", "param"), [
    (b"{not json", None),
    (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
    (b'{"model": "parley", "messages": [{"role": "robot", "content": "hi"}]}', "messages.0.role"),
    (b'{"model": "parley", "messages": [{"role": "user", "content": "hi"}], "stream": "maybe"}', "stream"),
    (b'{"model": "parley", "messages": [{"role": "assistant", "content": "hi"}]}', "messages.0.role"),
])
async def test_malformed_requests_are_400_naming_the_field(client, body, param):
    response = await client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    error = openai_error(response, 400, "invalid_request")
    assert error["type"] == "invalid_request_error" and error["param"] == param


async def test_http_errors_on_openai_paths_are_in_openai_shape(client):
    openai_error(await client.get("/v1/chat/completions"), 405, "method_not_allowed")
    openai_error(await client.get("/v1/chat/nothing-here"), 404, "not_found")
    native = await client.get("/v1/sessions/" + "e" * 32)
    assert native.json() == {"error": {"code": "session_not_found", "message": native.json()["error"]["message"]}}


async def test_assistant_messages_take_text_only(client):
    messages = [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]},
                {"role": "user", "content": "hi"}]
    error = openai_error(await client.post("/v1/chat/completions", json={"model": "parley", "messages": messages}),
                         400, "invalid_request")
    assert error["param"] == "messages.0.content" and "text only" in error["message"]


async def test_images_other_than_data_urls_and_allowed_hosts_are_refused(client):
    for url, code in (("ftp://example.com/a.png", "invalid_image_url"), ("http://127.0.0.1:1/a.png", "remote_url_refused"),
                      ("//example.com/a.png", "invalid_image_url")):
        content = [{"type": "image_url", "image_url": {"url": url}}]
        response = await client.post("/v1/chat/completions",
                                     json={"model": "parley", "messages": [{"role": "user", "content": content}]})
        error = openai_error(response, 400, code)
        assert error["param"] == "messages.0.content"


@pytest.mark.parametrize(("status", "code", "kind"), [
    (401, "unauthorized", "authentication_error"), (404, "session_not_found", "not_found_error"),
    (413, "image_too_large", "invalid_request_error"), (422, "undecodable_image", "invalid_request_error"),
    (429, "rate_limited", "rate_limit_error"), (503, "not_ready", "server_error"),
])
def test_openai_error_types_by_status(status, code, kind):
    response = error_response(status, code, "why", {"Retry-After": "5"}, path="/v1/chat/completions", param="x")
    assert response.status_code == status and response.headers["Retry-After"] == "5"
    assert json.loads(response.body) == {"error": {"message": "why", "type": kind, "param": "x", "code": code}}
    native = error_response(status, code, "why", path="/v1/sessions")
    assert json.loads(native.body) == {"error": {"code": code, "message": "why"}}


def _image(url: str = "data:image/png;base64,iVBORw0KGgo=") -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def _clip() -> dict:
    return {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}


@pytest.mark.parametrize("messages", [
    # five images over two user messages: more than one turn's worth (PARLEY_MAX_IMAGES is 4)
    [{"role": "user", "content": [_image()] * 3}, {"role": "assistant", "content": "ok"},
     {"role": "user", "content": [_image()] * 2}],
    # two voice clips in one stateless request
    [{"role": "user", "content": [_clip()]}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": [_clip()]}],
    [{"role": "user", "content": [_clip(), _clip()]}],
])
async def test_a_request_carries_at_most_one_turns_media_in_all(client, messages):
    response = await client.post("/v1/chat/completions", json={"model": "parley", "messages": messages})
    error = openai_error(response, 413, "too_much_media")
    assert error["param"] == "messages" and "X-Session-Id" in error["message"]


async def test_assistant_text_is_held_to_the_text_limit(client, api_settings):
    messages = [{"role": "assistant", "content": "x" * (api_settings.max_text_chars + 1)},
                {"role": "user", "content": "hi"}]
    error = openai_error(await client.post("/v1/chat/completions", json={"model": "parley", "messages": messages}),
                         413, "text_too_long")
    assert error["param"] == "messages.0.content"


@pytest.mark.parametrize(("setting", "shown"), [
    ("default", "default"),
    ("HuggingFaceTB/SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct"),
    ("openai:http://gpu-box:8001/v1#qwen2.5", "qwen2.5"),
    ("fused:/srv/checkpoints/run7", "fused:run7"),
    ("/srv/models/my-lm", "my-lm"),
])
def test_clients_see_the_decoders_name_not_where_it_lives(setting, shown):
    assert decoder_name(setting) == shown


async def test_models_list_does_not_show_the_decoders_folder(client, api_settings):
    listed = (await client.get("/v1/models")).json()
    assert api_settings.decoder not in json.dumps(listed)  # the tiny test decoder lives in a temp folder
    assert listed["data"][0]["parley"]["decoder"] == decoder_name(api_settings.decoder)


async def ask(client, text: str, **parameters) -> dict:
    response = await client.post("/v1/chat/completions", json={
        "model": "parley", "messages": [{"role": "user", "content": text}], **parameters})
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_policys_draft_is_clipped_as_a_model_reply_would_be(client):
    # The tiny decoder's words never pass the fact check, so each reply here is the policy's draft.
    full = await ask(client, "My lamp arrived broken, order A7Q-4412")
    draft = full["choices"][0]["message"]["content"]
    assert not full["parley"]["grounded"] and full["choices"][0]["finish_reason"] == "stop"
    cut = await ask(client, "My lamp arrived broken, order A7Q-4412", max_tokens=3)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert draft.startswith(cut["choices"][0]["message"]["content"]) and len(cut["choices"][0]["message"]["content"]) < 20
    stopped = await ask(client, "My lamp arrived broken, order A7Q-4412", stop="A7Q")
    assert stopped["choices"][0] == {**full["choices"][0], "message": {
        **full["choices"][0]["message"], "content": draft[:draft.index("A7Q")]}}


async def test_n_choices_each_get_an_index_and_share_one_state(client):
    completion = await ask(client, "hello", n=2, temperature=0.7, seed=1)
    assert [choice["index"] for choice in completion["choices"]] == [0, 1]
    assert completion["parley"]["state"]["turns"] == 1


@pytest.mark.parametrize(("parameters", "param", "code"), [
    ({"n": 2, "stream": True, "response_format": {"type": "json_schema"}}, "response_format",
     "unsupported_response_format"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_request"),
    ({"tool_choice": "required"}, "tool_choice", "invalid_request"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools.0.function.name",
     "invalid_request"),
])
async def test_parameters_not_served_or_malformed_are_400(client, parameters, param, code):
    response = await client.post("/v1/chat/completions", json={
        "model": "parley", "messages": [{"role": "user", "content": "hi"}], **parameters})
    error = openai_error(response, 400, code)
    assert error["param"] == param
