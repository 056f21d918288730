"""OpenAI's chat parameters, driven by the official `openai` package against a real `parley serve` process with
the packaged decoder (SmolLM2), whose replies to a greeting pass the fact check, so what the parameters do to
the model's own wording shows: max_tokens, temperature and seed, top_p, n, stop, stream_options, response_format,
wrong types and unknown parameters. (Clipping the policy's fallback draft: tests/api/test_openai_compat.py.)"""

import httpx
import openai
import pytest

from tests.server import parley_test_server

pytestmark = pytest.mark.slow

GREETING = "hello"


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory):
    # PARLEY_DATA_DIR stays at its default: the converted decoder is cached there across runs.
    env = {"PARLEY_DECODER_MAX_NEW_TOKENS": "40", "PARLEY_TTS": "off"}
    with parley_test_server(redis_url, log_dir=tmp_path_factory.mktemp("log"), env=env, ready_timeout_s=300) as base:
        yield base


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0, timeout=120)


def ask(client: openai.OpenAI, text: str = GREETING, **kwargs):
    return client.chat.completions.create(model="parley", messages=[{"role": "user", "content": text}], **kwargs)


@pytest.fixture(scope="module")
def greedy_reply(server) -> str:
    """The model's greedy reply to the greeting: its own wording (it passed the fact check), ended by the model."""
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0, timeout=120)
    completion = ask(client)
    assert completion.parley["grounded"] and completion.choices[0].finish_reason == "stop"
    return completion.choices[0].message.content


def test_temperature_zero_is_greedy_and_repeatable(client, greedy_reply):
    again = ask(client, temperature=0)
    assert again.choices[0].message.content == greedy_reply and again.parley["grounded"]


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_cuts_the_reply_with_finish_reason_length(client, greedy_reply, limit):
    cut = ask(client, **{limit: 4})
    choice = cut.choices[0]
    assert choice.finish_reason == "length" and cut.usage.completion_tokens == 4
    assert greedy_reply.startswith(choice.message.content) and len(choice.message.content) < len(greedy_reply)
    roomy = ask(client, **{limit: 200})
    assert roomy.choices[0].finish_reason == "stop" and roomy.choices[0].message.content == greedy_reply


def test_a_seed_repeats_a_sampled_reply_and_other_seeds_sample_others(client, greedy_reply):
    first = ask(client, temperature=1.0, seed=7).choices[0].message.content
    assert ask(client, temperature=1.0, seed=7).choices[0].message.content == first
    # Sampling really happened: the greedy reply passes the fact check every time, so a sampled reply that reads
    # differently, or that failed the check (the policy's wording was sent instead), came from another draw.
    others = [ask(client, temperature=1.0, seed=seed) for seed in (8, 9, 10)]
    assert any(o.choices[0].message.content != greedy_reply or not o.parley["grounded"] for o in others)


def test_top_p_near_zero_keeps_only_the_likeliest_token(client, greedy_reply):
    assert ask(client, temperature=1.5, top_p=1e-6, seed=3).choices[0].message.content == greedy_reply


def test_n_writes_that_many_choices_for_one_tracked_turn(client):
    completion = ask(client, n=3, temperature=1.0, seed=11)
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    texts = [choice.message.content for choice in completion.choices]
    assert all(texts) and len(set(texts)) > 1  # each choice samples with its own generator
    assert completion.parley["state"]["turns"] == 1
    assert completion.usage.completion_tokens > max(len(text.split()) for text in texts)  # all choices counted


def test_n_above_one_with_a_session_is_refused(client, server):
    session = httpx.post(f"{server}/v1/sessions").json()["id"]
    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, n=2, extra_headers={"X-Session-Id": session})
    body = refused.value.body
    assert body["code"] == "unsupported_n" and body["param"] == "n" and "one reply per turn" in body["message"]
    assert httpx.get(f"{server}/v1/sessions/{session}/state").json()["turns"] == 0


def test_a_stop_sequence_ends_the_reply_before_it(client, greedy_reply):
    words = greedy_reply.split()
    stop = words[len(words) // 2]
    completion = ask(client, stop=[stop, "never-in-a-reply"])
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == greedy_reply[:greedy_reply.index(stop)]


def test_include_usage_sends_a_last_chunk_with_usage_and_no_choices(client, greedy_reply):
    chunks = list(ask(client, stream=True, stream_options={"include_usage": True}, max_tokens=5))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 5
    content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks[:-1])
    assert greedy_reply.startswith(content) and [c.choices[0].finish_reason for c in chunks[:-1]][-1] == "length"
    plain = list(ask(client, stream=True, max_tokens=5))
    assert all(chunk.usage is None and chunk.choices for chunk in plain)


def test_response_format_text_is_accepted_and_json_is_refused(client, greedy_reply):
    assert ask(client, response_format={"type": "text"}).choices[0].message.content == greedy_reply
    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, response_format={"type": "json_object"})
    body = refused.value.body
    assert body["param"] == "response_format" and "json_object" in body["message"] and "not supported" in body["message"]


@pytest.mark.parametrize(("parameters", "param"), [
    ({"temperature": "hot"}, "temperature"), ({"temperature": 3}, "temperature"), ({"n": 0}, "n"),
    ({"max_tokens": -1}, "max_tokens"), ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"top_p": 1.5}, "top_p"), ({"seed": "abc"}, "seed"),
])
def test_wrong_types_and_ranges_are_400_in_openais_shape(client, parameters, param):
    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, extra_body=parameters)
    body = refused.value.body
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error" and body["param"] == param and param in body["message"]


def test_unknown_parameters_are_ignored(client, greedy_reply):
    completion = ask(client, user="customer-7", logprobs=False, parallel_tool_calls=True,
                     extra_body={"frobnicate": {"level": 3}, "top_k": 5})
    assert completion.choices[0].message.content == greedy_reply
