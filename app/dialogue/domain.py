"""Dialogue domains: intents, slots and canned responses loaded from YAML.

A domain is data, not code, so operators can ship their own YAML. Everything is
validated once at load time: a typo in a domain file should fail at startup with
a message naming the intent or slot, not as a KeyError in the middle of a turn.
"""

from __future__ import annotations

import re
import importlib
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from app.dialogue.slot_types import SLOT_TYPES

DEFAULT_DOMAIN_PATH = Path(__file__).parent / "domains" / "customer_service.yaml"

# Defaults for an action webhook: a customer waits for the reply, so tries are few and short
# (1 + retries attempts of at most timeout_s each, plus the backoff between them).
ACTION_TIMEOUT_S = 3.0
ACTION_RETRIES = 2
MAX_ACTION_RETRIES = 5

# Said when a domain file does not word these itself.
ACTION_FAILED_RESPONSE = (
    "Sorry, I can't reach our order system right now. I'll try again when you ask me next, "
    "or a member of our support team can help you."
)
HANDED_OFF_RESPONSE = "A member of our support team has your conversation and will answer you here shortly."
HANDOFF_FAILED_RESPONSE = (
    "Sorry, I couldn't reach our support team just now. I'll keep trying, and a person will answer you here "
    "as soon as they can."
)


class DomainError(ValueError):
    """A domain file is malformed; the message says where and how to fix it."""


@dataclass(frozen=True)
class SlotSpec:
    name: str
    type: str  # a registered slot type (app/dialogue/slot_types/)
    prompt: str  # asked when the slot is missing, e.g. "What is your order number?"
    # Vocabulary types only: canonical value -> lowercase synonyms (the canonical
    # value itself is always included, underscores read as spaces). Empty otherwise.
    values: Mapping[str, tuple[str, ...]]
    mentions: tuple[str, ...]  # phrases naming the slot, e.g. ("order number", "order")


@dataclass(frozen=True)
class IntentSpec:
    name: str
    examples: tuple[str, ...]
    required_slots: tuple[str, ...]
    response: str  # str.format template over required slots, said once they are filled
    keeps_active: bool  # meta intents (inform, ask_recall) leave the active task intent alone
    action: str | None = None  # webhook called once the required slots are filled; a key of Domain.actions
    tool: str | None = None  # the client tool (OpenAI `tools`) that serves this intent, when a request offers it
    social: bool = False  # small talk (greeting, goodbye): a task said in the same message wins over it
    implied_by: tuple[str, ...] = ()  # slots that, filled by a turn whose words name no task, imply this intent
    states: tuple[str, ...] = ()  # slots the response states when known, though it needs none of them


@dataclass(frozen=True)
class ActionSpec:
    """A customer-service backend the dialogue can ask (app/dialogue/actions.py calls it)."""

    name: str  # sent in the payload, so one URL can serve several actions
    url: str  # http(s)
    timeout_s: float  # per attempt
    retries: int  # further attempts after a connect error, a timeout or a 5xx
    provides: tuple[str, ...]  # slots the answer must fill; the intent's response may use them


@dataclass(frozen=True)
class Domain:
    name: str
    intents: Mapping[str, IntentSpec]
    slots: Mapping[str, SlotSpec]
    fallback_response: str
    handoff_response: str
    handoff_sentiment: float  # VADER compound at or below which a human takes over
    actions: Mapping[str, ActionSpec] = field(default_factory=lambda: MappingProxyType({}))
    action_failed_response: str = ACTION_FAILED_RESPONSE  # an action's backend is down or answered badly
    handed_off_response: str = HANDED_OFF_RESPONSE  # turns after the handoff
    handoff_failed_response: str = HANDOFF_FAILED_RESPONSE  # the handoff webhook could not be reached


def load_domain(path: str | Path | None = None) -> Domain:
    """Load and validate a domain; None loads the packaged customer-service domain."""
    source = Path(path) if path is not None else DEFAULT_DOMAIN_PATH
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DomainError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise DomainError(f"{source}: expected a mapping with 'intents' and 'slots' at the top level")
    return _parse_domain(raw, where=str(source))


def _parse_domain(raw: dict[str, Any], where: str) -> Domain:
    _import_slot_types(raw.get("slot_type_modules") or [], where)
    slots = {name: _parse_slot(name, spec) for name, spec in _section(raw, "slots", where).items()}
    actions = {
        name: _parse_action(name, spec, slots, f"action '{name}'")
        for name, spec in (_section(raw, "actions", where) if "actions" in raw else {}).items()
    }
    intents = {
        name: _parse_intent(name, spec, slots, actions)
        for name, spec in _section(raw, "intents", where).items()
    }
    if not intents:
        raise DomainError(f"{where}: 'intents' is empty; define at least one intent")
    threshold = float(raw.get("handoff_sentiment", -0.6))
    if not -1.0 <= threshold <= 1.0:
        raise DomainError(f"{where}: handoff_sentiment {threshold} is outside VADER's range [-1, 1]")
    return Domain(
        name=str(raw.get("name", Path(where).stem)),
        intents=MappingProxyType(intents),
        slots=MappingProxyType(slots),
        fallback_response=_required_text(raw, "fallback_response", where),
        handoff_response=_required_text(raw, "handoff_response", where),
        handoff_sentiment=threshold,
        actions=MappingProxyType(actions),
        **{key: _required_text(raw, key, where) for key in _OPTIONAL_TEXTS if key in raw},
    )


def _import_slot_types(modules: Any, where: str) -> None:
    """Modules that register more slot types (app/dialogue/slot_types/base.py: `register`)."""
    if not isinstance(modules, list):
        raise DomainError(f"{where}: 'slot_type_modules' must be a list of importable module names")
    for module in modules:
        try:
            importlib.import_module(str(module))
        except ImportError as exc:
            raise DomainError(f"{where}: slot type module '{module}' cannot be imported: {exc}") from exc


_OPTIONAL_TEXTS = ("action_failed_response", "handed_off_response", "handoff_failed_response")


def _parse_action(name: str, spec: Any, slots: Mapping[str, SlotSpec], where: str) -> ActionSpec:
    """`{url, name?, timeout_s?, retries?, provides?}`, from the `actions` section or inline on an intent."""
    if not isinstance(spec, dict):
        raise DomainError(f"{where}: expected a mapping with at least 'url'")
    unknown = set(spec) - {"url", "name", "timeout_s", "retries", "provides"}
    if unknown:
        raise DomainError(f"{where}: unknown keys {sorted(unknown)}; use url, name, timeout_s, retries, provides")
    url = str(spec.get("url") or "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DomainError(f"{where}: url '{url}' is not an http(s) URL with a host")
    try:
        timeout_s, retries = float(spec.get("timeout_s", ACTION_TIMEOUT_S)), int(spec.get("retries", ACTION_RETRIES))
    except (TypeError, ValueError) as exc:
        raise DomainError(f"{where}: timeout_s must be a number of seconds and retries a whole number") from exc
    if not 0 < timeout_s <= 60:
        raise DomainError(f"{where}: timeout_s {timeout_s} is outside (0, 60]: a customer is waiting")
    if not 0 <= retries <= MAX_ACTION_RETRIES:
        raise DomainError(f"{where}: retries {retries} is outside [0, {MAX_ACTION_RETRIES}]")
    provides = tuple(str(p) for p in spec.get("provides") or ())
    for slot in provides:
        if not slot.isidentifier():
            raise DomainError(f"{where}: provided slot '{slot}' is not a name (letters, digits, underscores)")
        if slot in slots:
            raise DomainError(f"{where}: provided slot '{slot}' is also a user slot; give the answer's slot "
                              "another name so a backend never overwrites what the customer said")
    return ActionSpec(name=str(spec.get("name") or name), url=url, timeout_s=timeout_s, retries=retries,
                      provides=provides)


def _parse_slot(name: str, spec: Any) -> SlotSpec:
    if not isinstance(spec, dict):
        raise DomainError(f"slot '{name}': expected a mapping with 'type' and 'prompt'")
    slot_type = spec.get("type", name)  # a slot named "email" is an email unless told otherwise
    if slot_type not in SLOT_TYPES:
        raise DomainError(
            f"slot '{name}': unknown type '{slot_type}'; use one of {sorted(SLOT_TYPES)}"
        )
    values = _parse_values(name, spec.get("values") or {})
    vocabulary = SLOT_TYPES[slot_type].vocabulary
    if vocabulary and not values:
        raise DomainError(f"slot '{name}': type '{slot_type}' needs a 'values' list of canonical values")
    if not vocabulary and values:
        raise DomainError(f"slot '{name}': type '{slot_type}' is pattern-matched; remove its 'values'")
    return SlotSpec(
        name=name,
        type=slot_type,
        prompt=_required_text(spec, "prompt", f"slot '{name}'"),
        values=MappingProxyType(values),
        mentions=tuple(str(m).lower() for m in spec.get("mentions") or (name.replace("_", " "),)),
    )


def _parse_values(slot: str, raw: Any) -> dict[str, tuple[str, ...]]:
    """Accept `canonical: [synonyms]` or a bare list of canonical values."""
    if isinstance(raw, list):
        raw = {value: [] for value in raw}
    if not isinstance(raw, dict):
        raise DomainError(f"slot '{slot}': 'values' must map each canonical value to a list of synonyms")
    values = {}
    for canonical, synonyms in raw.items():
        spoken = str(canonical).replace("_", " ").lower()
        words = [spoken, *(str(s).lower() for s in synonyms or ())]
        values[str(canonical)] = tuple(dict.fromkeys(words))  # dedupe, keep order
    return values


def _parse_intent(
    name: str, spec: Any, slots: Mapping[str, SlotSpec], actions: dict[str, ActionSpec]
) -> IntentSpec:
    """`action` names an entry of the `actions` section or is one inline (added to `actions` under the intent's name)."""
    if not isinstance(spec, dict):
        raise DomainError(f"intent '{name}': expected a mapping with 'examples' and 'response'")
    examples = tuple(str(e) for e in spec.get("examples") or ())
    if not examples:
        raise DomainError(f"intent '{name}': no examples; add a few utterances that express it")
    required = tuple(spec.get("required_slots") or ())
    for slot in required:
        if slot not in slots:
            raise DomainError(
                f"intent '{name}': required slot '{slot}' is not defined; add it under 'slots' "
                f"(defined: {sorted(slots)})"
            )
    action = spec.get("action")
    if isinstance(action, dict):
        actions[name] = _parse_action(name, action, slots, f"intent '{name}': action")
        action = name
    elif action is not None and action not in actions:
        raise DomainError(f"intent '{name}': action '{action}' is not defined under 'actions' "
                          f"(defined: {sorted(actions)})")
    implied_by, states = (tuple(str(slot) for slot in spec.get(key) or ()) for key in ("implied_by", "states"))
    for key, named in (("implied_by", implied_by), ("states", states)):
        for slot in named:
            if slot not in slots:
                raise DomainError(f"intent '{name}': {key} slot '{slot}' is not defined under 'slots'")
    provided = actions[action].provides if action is not None else ()
    response = _required_text(spec, "response", f"intent '{name}'")
    _check_placeholders(name, response, required, slots, provided)
    tool = spec.get("tool")
    if tool is not None and not (isinstance(tool, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tool)):
        raise DomainError(f"intent '{name}': tool {tool!r} is not a function name (letters, digits, _ and -, "
                          "at most 64, as OpenAI's tools are named)")
    return IntentSpec(
        name=name,
        examples=examples,
        required_slots=required,
        response=response,
        keeps_active=bool(spec.get("keeps_active", False)),
        action=action,
        tool=tool,
        social=bool(spec.get("social", False)),
        implied_by=implied_by,
        states=states,
    )


def _check_placeholders(
    intent: str, response: str, required: tuple[str, ...], slots: Mapping[str, SlotSpec],
    provided: tuple[str, ...] = (),
) -> None:
    """Every {placeholder} must be a required slot or one the intent's action provides, so formatting can
    never miss a key."""
    try:
        placeholders = [name for _, name, _, _ in string.Formatter().parse(response) if name is not None]
    except ValueError as exc:
        raise DomainError(f"intent '{intent}': response is not a valid template: {exc}") from exc
    for placeholder in placeholders:
        if placeholder in provided:
            continue
        if placeholder not in slots:
            raise DomainError(
                f"intent '{intent}': response placeholder '{{{placeholder}}}' names no slot; "
                f"use one of {sorted(slots) + list(provided)} or remove it"
            )
        if placeholder not in required:
            raise DomainError(
                f"intent '{intent}': response uses '{{{placeholder}}}' but '{placeholder}' is not in "
                "required_slots, so it may be unfilled; add it to required_slots"
            )


def _section(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    section = raw.get(key)
    if not isinstance(section, dict):
        raise DomainError(f"{where}: '{key}' must be a mapping of name -> spec")
    return section


def _required_text(spec: dict[str, Any], key: str, where: str) -> str:
    text = spec.get(key)
    if not isinstance(text, str) or not text.strip():
        raise DomainError(f"{where}: '{key}' is missing or empty; give it a sentence of text")
    return text
