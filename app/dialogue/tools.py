"""Client-side tools (OpenAI's `tools`): when the dialogue state can fill a tool's arguments, the turn asks the
client to run it instead of replying, and the tool's answer is stated in the next reply like a webhook's.

A tool is chosen for the active intent once its required slots are filled: the tool the domain binds to the
intent (`tool: <name>` in the domain file), else the first offered tool whose JSON-schema `parameters` the
slots satisfy, among those that need at least one of the intent's own slots (so a billing question never
calls an order lookup just because an order number was mentioned earlier). Arguments are the slot values the
schema names, converted to the types it asks for and validated against it. No HTTP here: state in, call out.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import BaseModel

from app.dialogue.actions import MAX_ANSWER_ITEMS, MAX_VALUE_CHARS
from app.dialogue.domain import Domain
from app.dialogue.policy import ActionResult
from app.dialogue.state import DialogueState

NUMBER = re.compile(r"^[-+]?\d+(\.\d+)?$")
CURRENCY = re.compile(r"[$€£,\s]")  # stripped before an amount is read as a number


class ToolUnsatisfiable(ValueError):
    """The client forced a tool (tool_choice) that the dialogue state cannot fill; the message says why."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    parameters: dict[str, Any]  # a JSON schema of an object ({} when the tool takes none)


@dataclass(frozen=True)
class ToolOffer:
    """The tools a request passes and its tool_choice: "auto", "none", "required", or a tool's name."""

    tools: tuple[ToolSpec, ...]
    choice: str = "auto"


class ToolCall(BaseModel):
    id: str  # "call_<hex>"
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    """A `tool` message: the client ran a call and sends its output (JSON or text)."""

    call_id: str
    content: str


def choose_tool(state: DialogueState, domain: Domain, offer: ToolOffer | None, *, complete: bool) -> ToolCall | None:
    """The call the turn makes instead of a reply, or None. `complete`: the active intent has all its required
    slots and the policy would now act on it. ToolUnsatisfiable when tool_choice forces a call that the slots
    cannot fill."""
    if offer is None or not offer.tools or offer.choice == "none":
        return None
    if offer.choice not in ("auto", "required"):  # a named tool: called whenever the slots fill it
        [tool] = [tool for tool in offer.tools if tool.name == offer.choice]
        arguments = _arguments(tool, state, domain, forced=True)
        assert arguments is not None  # forced: arguments it cannot fill raise ToolUnsatisfiable
        return _call(tool, arguments)
    found = _auto(state, domain, offer.tools) if complete and not state.handed_off else None
    if found is None and offer.choice == "required":
        raise ToolUnsatisfiable("tool_choice is 'required' but no offered tool can be called yet: "
                                + _missing_summary(state, domain, offer.tools))
    return found


def _auto(state: DialogueState, domain: Domain, tools: tuple[ToolSpec, ...]) -> ToolCall | None:
    intent = domain.intents[state.intent] if state.intent else None
    if intent is None:
        return None
    bound = [tool for tool in tools if tool.name == intent.tool]
    if bound and (arguments := _arguments(bound[0], state, domain)) is not None:
        return _call(bound[0], arguments)
    for tool in tools:
        needed = set(tool.parameters.get("required") or ())
        if needed & set(intent.required_slots) and (arguments := _arguments(tool, state, domain)) is not None:
            return _call(tool, arguments)
    return None


def _call(tool: ToolSpec, arguments: dict[str, Any]) -> ToolCall:
    return ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=tool.name, arguments=arguments)


def _arguments(tool: ToolSpec, state: DialogueState, domain: Domain, *, forced: bool = False) -> dict[str, Any] | None:
    """The slot values the schema names, typed as it asks; None (or ToolUnsatisfiable when forced) when a
    required property has no slot value or a value does not validate."""
    properties = tool.parameters.get("properties")
    if isinstance(properties, dict):
        names = list(properties)
    else:  # a schema without properties: a bound tool takes the intent's required slots
        intent = domain.intents[state.intent] if state.intent else None
        names, properties = list(intent.required_slots if intent else ()), {}
    arguments = {name: _typed(state.slots[name], properties.get(name) or {}) for name in names if name in state.slots}
    errors = sorted(Draft202012Validator(tool.parameters).iter_errors(arguments), key=lambda e: list(e.path))
    if not errors:
        return arguments
    if forced:
        missing = [name for name in tool.parameters.get("required") or () if name not in state.slots]
        why = f"the conversation has no {', '.join(missing)} yet" if missing else errors[0].message
        raise ToolUnsatisfiable(f"tool_choice names {tool.name!r}, but its arguments cannot be filled: {why}")
    return None


def _typed(value: str, schema: dict[str, Any]) -> Any:
    """A slot value (always text) as the property's JSON type, where it reads as one; else the text, which the
    schema check then refuses."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    number = CURRENCY.sub("", value)
    if "integer" in kinds and NUMBER.match(number) and "." not in number:
        return int(number)
    if "number" in kinds and NUMBER.match(number):
        return float(number)
    return value


def _missing_summary(state: DialogueState, domain: Domain, tools: tuple[ToolSpec, ...]) -> str:
    wanted = sorted({name for tool in tools for name in tool.parameters.get("required") or ()} - set(state.slots))
    if state.intent is None:
        return "the conversation has no task yet"
    return f"missing {', '.join(wanted)}" if wanted else f"the {state.intent} request is not complete yet"


def check_schema(parameters: dict[str, Any]) -> str | None:
    """Why a tool's `parameters` is not a usable JSON schema, or None."""
    try:
        Draft202012Validator.check_schema(parameters)
    except Exception as exc:  # jsonschema's SchemaError, or a schema it cannot even walk
        return str(getattr(exc, "message", exc))
    return None


def tool_answer(results: tuple[ToolResult, ...], provides: tuple[str, ...]) -> ActionResult:
    """Tool outputs as a webhook answer: JSON fields that are the intent's provided slots fill them, the others
    are facts this reply states; text that is not a JSON object is one fact, `result`. An object with an
    `error` field is a failed call (the reply says the system could not be reached, never that it ran)."""
    fields: dict[str, str] = {}
    for result in results:
        try:
            answer = json.loads(result.content)
        except ValueError:
            answer = result.content
        if isinstance(answer, dict) and answer.get("error"):
            return ActionResult(ok=False)
        fields.update(_flat(answer) if isinstance(answer, dict) else _flat({"result": answer}))
    fields = dict(list(fields.items())[:MAX_ANSWER_ITEMS])
    slots = {name: fields.pop(name) for name in provides if name in fields}
    return ActionResult(ok=True, slots=slots, facts=fields)


def _flat(answer: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{"eta": {"day": "Friday"}, "items": [1, 2]} -> {"eta_day": "Friday", "items": "1, 2"}: printable, short."""
    flat: dict[str, str] = {}
    for key, value in answer.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}_"))
            continue
        if isinstance(value, list):
            value = ", ".join(_text(item) for item in value)
        text = "".join(ch for ch in " ".join(_text(value).split()) if ch.isprintable())[:MAX_VALUE_CHARS]
        if text and value is not None:
            flat[name] = text
    return flat


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
