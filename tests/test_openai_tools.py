"""OpenAI tool calls from the dialogue state, driven by the official `openai` package against a real `parley serve`
process: a call with validated arguments once the intent's slots are filled, tool_choice none / named /
required, the tool's output stated in the next reply (stateless and with X-Session-Id), a failed tool never
reported as done. The decoder is a tiny random model, so replies are the policy's own wording."""

import json

import httpx
import jsonschema
import openai
import pytest

from tests.factories import tiny_causal_lm
from tests.server import parley_test_server

LOOKUP_ORDER = {"type": "function", "function": {
    "name": "lookup_order", "description": "Look an order up in the order system",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string", "pattern": "^[A-Z0-9-]+$"}},
                   "required": ["order_id"], "additionalProperties": False}}}
REQUEST_REFUND = {"type": "function", "function": {
    "name": "request_refund",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}
CHECK_ACCOUNT = {"type": "function", "function": {  # bound to no intent: chosen because the slots fill it
    "name": "check_account",
    "parameters": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]}}}
NUMERIC_ORDER = {"type": "function", "function": {
    "name": "lookup_order",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]}}}
ORDER_QUESTION = "Has my package A7Q-4412 shipped yet?"
SHIPPED = json.dumps({"status": "shipped", "carrier": "DHL", "eta": "Friday 12 June"})


@pytest.fixture(scope="module")
def server(redis_url, tmp_path_factory):
    env = {"PARLEY_DECODER": str(tiny_causal_lm(tmp_path_factory.mktemp("decoder"))),
           "PARLEY_DECODER_MAX_NEW_TOKENS": "8", "PARLEY_DATA_DIR": str(tmp_path_factory.mktemp("data")),
           "PARLEY_TTS": "off"}
    with parley_test_server(redis_url, log_dir=tmp_path_factory.mktemp("log"), env=env) as base:
        yield base


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed", max_retries=0, timeout=60)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def chat(client: openai.OpenAI, messages: list[dict], **kwargs):
    return client.chat.completions.create(model="parley", messages=messages, **kwargs)


def tool_message(call_id: str, content: str) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def called(completion, name: str, tool: dict) -> tuple[dict, dict]:
    """The completion's one tool call, checked to be OpenAI's shape: (the assistant message as a client sends it
    back, the arguments, validated against the tool's schema)."""
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == name and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, tool["function"]["parameters"])
    return choice.message.model_dump(exclude_none=True), arguments


def test_a_filled_intent_becomes_a_call_of_its_bound_tool_with_validated_arguments(client):
    completion = chat(client, [user(ORDER_QUESTION)], tools=[CHECK_ACCOUNT, LOOKUP_ORDER])
    _, arguments = called(completion, "lookup_order", LOOKUP_ORDER)
    assert arguments == {"order_id": "A7Q-4412"}
    assert completion.parley["action"] == "tool_call" and completion.parley["state"]["intent"] == "order_status"
    assert completion.usage.completion_tokens == 0  # nothing was decoded


def test_no_call_while_a_required_slot_is_missing_or_a_value_does_not_fit_the_schema(client):
    asked = chat(client, [user("Has my package shipped yet?")], tools=[LOOKUP_ORDER])
    assert asked.choices[0].finish_reason == "stop" and asked.choices[0].message.tool_calls is None
    assert "order number" in asked.choices[0].message.content  # the policy asks for it instead
    lettered = chat(client, [user(ORDER_QUESTION)], tools=[NUMERIC_ORDER])  # A7Q-4412 is no integer
    assert lettered.choices[0].message.tool_calls is None and lettered.choices[0].message.content
    numeric = chat(client, [user("Has my order 4512 shipped yet?")], tools=[NUMERIC_ORDER])
    assert called(numeric, "lookup_order", NUMERIC_ORDER)[1] == {"order_id": 4512}  # typed as the schema asks


def test_a_tool_no_intent_names_is_called_when_the_slots_satisfy_its_schema(client):
    completion = chat(client, [user("I was charged twice, my email is jane.doe@example.com")],
                      tools=[LOOKUP_ORDER, CHECK_ACCOUNT])
    assert completion.parley["state"]["intent"] == "billing"
    assert called(completion, "check_account", CHECK_ACCOUNT)[1] == {"email": "jane.doe@example.com"}


def test_tool_choice_none_replies_instead(client):
    completion = chat(client, [user(ORDER_QUESTION)], tools=[LOOKUP_ORDER], tool_choice="none")
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None and "A7Q-4412" in choice.message.content


def test_a_named_tool_choice_forces_that_tool_or_is_refused(client):
    named = {"type": "function", "function": {"name": "request_refund"}}
    forced = chat(client, [user(ORDER_QUESTION)], tools=[LOOKUP_ORDER, REQUEST_REFUND], tool_choice=named)
    assert called(forced, "request_refund", REQUEST_REFUND)[1] == {"order_id": "A7Q-4412"}
    with pytest.raises(openai.BadRequestError) as refused:
        chat(client, [user("hello")], tools=[LOOKUP_ORDER, REQUEST_REFUND], tool_choice=named)
    body = refused.value.body
    assert body["code"] == "tool_unsatisfiable" and body["param"] == "tool_choice" and "order_id" in body["message"]
    with pytest.raises(openai.BadRequestError) as unknown:
        chat(client, [user(ORDER_QUESTION)], tools=[LOOKUP_ORDER],
             tool_choice={"type": "function", "function": {"name": "cancel_order"}})
    assert unknown.value.body["param"] == "tool_choice" and "cancel_order" in unknown.value.body["message"]
    with pytest.raises(openai.BadRequestError) as required:
        chat(client, [user("hello")], tools=[LOOKUP_ORDER], tool_choice="required")
    assert required.value.body["code"] == "tool_unsatisfiable"


def test_stateless_the_tool_output_is_stated_in_the_next_reply(client):
    messages = [user(ORDER_QUESTION)]
    call_message, _ = called(chat(client, messages, tools=[LOOKUP_ORDER]), "lookup_order", LOOKUP_ORDER)
    messages += [call_message, tool_message(call_message["tool_calls"][0]["id"], SHIPPED)]
    answer = chat(client, messages, tools=[LOOKUP_ORDER])
    choice = answer.choices[0]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert all(fact in choice.message.content for fact in ("A7Q-4412", "shipped", "DHL", "Friday 12 June"))
    assert answer.parley["action"] == "respond" and answer.parley["state"]["turns"] == 1  # one user turn, tracked once


def test_with_a_session_the_call_and_its_output_are_turns_of_it(client, server):
    session = httpx.post(f"{server}/v1/sessions").json()["id"]
    headers = {"X-Session-Id": session}
    first = chat(client, [user(ORDER_QUESTION)], tools=[LOOKUP_ORDER], extra_headers=headers)
    call_message, _ = called(first, "lookup_order", LOOKUP_ORDER)
    output = tool_message(call_message["tool_calls"][0]["id"], "Shipped with DHL, arriving Friday")  # plain text
    answer = chat(client, [user(ORDER_QUESTION), call_message, output], tools=[LOOKUP_ORDER], extra_headers=headers)
    assert "Shipped with DHL, arriving Friday" in answer.choices[0].message.content
    native = httpx.get(f"{server}/v1/sessions/{session}").json()
    assert native["state"]["intent"] == "order_status" and native["state"]["slots"]["order_id"] == "A7Q-4412"
    assistant = [entry for entry in native["history"] if entry["role"] == "assistant"]
    assert [entry["action"] for entry in assistant] == ["tool_call", "respond"]
    assert assistant[-1]["text"] == answer.choices[0].message.content


def test_a_failed_tool_is_never_reported_as_done(client):
    messages = [user(ORDER_QUESTION)]
    call_message, _ = called(chat(client, messages, tools=[LOOKUP_ORDER]), "lookup_order", LOOKUP_ORDER)
    messages += [call_message, tool_message(call_message["tool_calls"][0]["id"], '{"error": "order system timeout"}')]
    answer = chat(client, messages, tools=[LOOKUP_ORDER])
    reply = answer.choices[0].message.content
    assert answer.parley["action"] == "action_unavailable"
    assert "can't reach" in reply and "looked up" not in reply


def test_a_streamed_tool_call(client):
    chunks = list(chat(client, [user(ORDER_QUESTION)], tools=[LOOKUP_ORDER], stream=True,
                       stream_options={"include_usage": True}))
    calls = [call for chunk in chunks if chunk.choices for call in chunk.choices[0].delta.tool_calls or ()]
    assert len(calls) == 1 and calls[0].function.name == "lookup_order" and calls[0].id.startswith("call_")
    assert json.loads(calls[0].function.arguments) == {"order_id": "A7Q-4412"}
    finishes = [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert finishes == ["tool_calls"] and chunks[-1].choices == [] and chunks[-1].usage is not None


def test_tool_messages_must_answer_the_assistants_calls(client):
    with pytest.raises(openai.BadRequestError) as orphan:
        chat(client, [user(ORDER_QUESTION), tool_message("call_x", SHIPPED)], tools=[LOOKUP_ORDER])
    assert orphan.value.body["param"] == "messages.1.role"
    call_message, _ = called(chat(client, [user(ORDER_QUESTION)], tools=[LOOKUP_ORDER]), "lookup_order", LOOKUP_ORDER)
    with pytest.raises(openai.BadRequestError) as stranger:
        chat(client, [user(ORDER_QUESTION), call_message, tool_message("call_other", SHIPPED)], tools=[LOOKUP_ORDER])
    assert stranger.value.body["param"] == "messages.2.tool_call_id"
    with pytest.raises(openai.BadRequestError) as bad_schema:
        bad = {"type": "function", "function": {"name": "broken", "parameters": {"type": "no-such-type"}}}
        chat(client, [user(ORDER_QUESTION)], tools=[bad])
    assert bad_schema.value.body["param"] == "tools.0.function.parameters"
