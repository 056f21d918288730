import copy
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from app.dialogue.domain import DEFAULT_DOMAIN_PATH, DomainError, load_domain
from tests.readme import readme_block

TASK_INTENTS = {
    "greeting", "order_status", "damaged_item", "return_item", "refund_request",
    "billing", "technical_support", "complaint", "human_agent", "goodbye",
}  # fmt: skip
META_INTENTS = {"inform", "ask_recall", "ask_knowledge", "off_topic", "not_fixed"}  # keep the task intent active

# The smallest valid domain; each error test breaks exactly one thing in a copy.
MINIMAL = {
    "name": "tiny",
    "fallback_response": "Sorry?",
    "handoff_response": "Passing you to a person.",
    "handoff_sentiment": -0.5,
    "slots": {
        "order_id": {"type": "order_id", "prompt": "Order number?", "mentions": ["order"]},
        "product": {"type": "product", "prompt": "Which product?", "values": {"lamp": ["lamps"], "coffee_maker": []}},
    },
    "intents": {
        "order_status": {
            "examples": ["where is my order"],
            "required_slots": ["order_id"],
            "response": "Order {order_id} is on its way.",
        },
    },
}


def write_domain(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "domain.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def packaged():
    return load_domain()


def test_packaged_domain_has_all_intents_and_slots(packaged):
    assert TASK_INTENTS | META_INTENTS == set(packaged.intents)
    assert {"order_id", "product", "email", "phone", "amount", "issue", "error_code", "tracking_number",
            "expected_day"} == set(packaged.slots)
    assert packaged.handoff_sentiment == -0.6
    assert packaged.fallback_response and packaged.handoff_response


def test_only_meta_intents_keep_the_active_intent(packaged):
    assert {name for name, i in packaged.intents.items() if i.keeps_active} == META_INTENTS


@pytest.mark.parametrize("intent", sorted(TASK_INTENTS | META_INTENTS))
def test_packaged_intent_has_varied_examples(packaged, intent):
    examples = packaged.intents[intent].examples
    assert 10 <= len(examples) <= 20
    assert len({e.lower() for e in examples}) == len(examples)


@pytest.mark.parametrize("intent", sorted(TASK_INTENTS | META_INTENTS - {"inform"}))
def test_task_examples_carry_no_concrete_ids(packaged, intent):
    # Digits in a task example would pull every utterance with a number towards it.
    assert not [e for e in packaged.intents[intent].examples if re.search(r"\d", e)]


def test_packaged_responses_format_with_their_required_slots(packaged):
    for intent in packaged.intents.values():
        filled = intent.response.format(**{slot: f"<{slot}>" for slot in intent.required_slots})
        assert "{" not in filled
        for slot in intent.required_slots:
            assert f"<{slot}>" in filled, f"{intent.name} response does not state {slot}"


def test_packaged_vocabulary(packaged):
    products = packaged.slots["product"].values
    assert len(products) >= 25
    assert "lamp" in products["lamp"]  # the canonical value is always its own synonym
    assert "coffee maker" in products["coffee_maker"]  # underscores read as spaces
    assert "broken" in packaged.slots["issue"].values["damaged"]
    assert packaged.slots["email"].values == {}
    assert "order number" in packaged.slots["order_id"].mentions


def test_domain_is_immutable(packaged):
    with pytest.raises(dataclasses.FrozenInstanceError):
        packaged.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        packaged.intents["new"] = packaged.intents["greeting"]  # type: ignore[index]


def test_load_from_str_path_and_list_values(tmp_path):
    raw = copy.deepcopy(MINIMAL)
    raw["slots"]["product"]["values"] = ["lamp", "desk_chair"]
    domain = load_domain(str(write_domain(tmp_path, raw)))
    assert domain.name == "tiny"
    assert domain.slots["product"].values["desk_chair"] == ("desk chair",)
    assert domain.intents["order_status"].keeps_active is False
    assert domain.handoff_sentiment == -0.5


def _break(path: list[str], value):
    raw = copy.deepcopy(MINIMAL)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            _break(["intents", "order_status", "required_slots"], ["order_id", "colour"]),
            r"intent 'order_status': required slot 'colour' is not defined; add it under 'slots'",
            id="unknown-required-slot",
        ),
        pytest.param(
            _break(["slots", "order_id", "type"], "barcode"),
            r"slot 'order_id': unknown type 'barcode'; use one of \[",
            id="unknown-slot-type",
        ),
        pytest.param(
            _break(["intents", "order_status", "examples"], []),
            r"intent 'order_status': no examples",
            id="no-examples",
        ),
        pytest.param(
            _break(["intents", "order_status", "response"], "Order {order_number} is on its way."),
            r"intent 'order_status': response placeholder '\{order_number\}' names no slot",
            id="placeholder-names-no-slot",
        ),
        pytest.param(
            _break(["intents", "order_status", "response"], "Your {product} from {order_id} ships today."),
            r"'product' is not in required_slots.*add it to required_slots",
            id="placeholder-not-required",
        ),
        pytest.param(
            _break(["intents", "order_status", "response"], "Order {order_id is late."),
            r"intent 'order_status': response is not a valid template",
            id="broken-template",
        ),
        pytest.param(
            _break(["slots", "product", "values"], {}),
            r"slot 'product': type 'product' needs a 'values' list",
            id="categorical-without-values",
        ),
        pytest.param(
            _break(["handoff_sentiment"], -3),
            r"handoff_sentiment -3.0 is outside VADER's range",
            id="threshold-out-of-range",
        ),
        pytest.param(
            _break(["intents", "order_status", "response"], ""),
            r"intent 'order_status': 'response' is missing or empty",
            id="empty-response",
        ),
        pytest.param(
            _break(["intents", "order_status", "tool"], "look up order"),
            r"intent 'order_status': tool 'look up order' is not a function name",
            id="tool-not-a-function-name",
        ),
        pytest.param(
            _break(["slots", "order_id"], "order number"),
            r"slot 'order_id': expected a mapping",
            id="slot-not-a-mapping",
        ),
    ],
)
def test_invalid_domain_names_the_problem(tmp_path, raw, expected):
    with pytest.raises(DomainError, match=expected):
        load_domain(write_domain(tmp_path, raw))


def test_domain_error_is_a_value_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_domain(path)


# An order lookup bound to order_status, named in the `actions` section.
WITH_ACTION = {
    **MINIMAL,
    "actions": {"order_lookup": {"url": "http://127.0.0.1:9/orders", "timeout_s": 1.5, "retries": 1,
                                 "provides": ["order_status", "delivery_date"]}},
    "intents": {"order_status": {**MINIMAL["intents"]["order_status"], "action": "order_lookup",
                                 "response": "Order {order_id} is {order_status}, due {delivery_date}."}},
}


def test_intent_binds_a_named_action(tmp_path):
    domain = load_domain(write_domain(tmp_path, WITH_ACTION))
    assert domain.intents["order_status"].action == "order_lookup"
    spec = domain.actions["order_lookup"]
    assert (spec.url, spec.timeout_s, spec.retries) == ("http://127.0.0.1:9/orders", 1.5, 1)
    assert spec.provides == ("order_status", "delivery_date")


def test_inline_action_takes_defaults_and_the_intent_name(tmp_path):
    raw = copy.deepcopy(MINIMAL)
    raw["intents"]["order_status"]["action"] = {"url": "https://backend.example/hook", "name": "lookup"}
    domain = load_domain(write_domain(tmp_path, raw))
    spec = domain.actions["order_status"]
    assert spec.name == "lookup" and spec.timeout_s == 3.0 and spec.retries == 2 and spec.provides == ()


def test_domain_without_actions_has_none_and_default_texts(packaged):
    assert dict(packaged.actions) == {}
    assert "support team" in packaged.handed_off_response and "order system" in packaged.action_failed_response


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["intents"]["order_status"].update(action="nope"), "action 'nope' is not defined"),
        (lambda r: r["actions"]["order_lookup"].update(url="ftp://x/y"), "not an http"),
        (lambda r: r["actions"]["order_lookup"].update(url="http:///path"), "not an http"),
        (lambda r: r["actions"]["order_lookup"].update(timeout_s=0), "timeout_s 0.0 is outside"),
        (lambda r: r["actions"]["order_lookup"].update(timeout_s="soon"), "timeout_s must be a number"),
        (lambda r: r["actions"]["order_lookup"].update(retries=50), "retries 50 is outside"),
        (lambda r: r["actions"]["order_lookup"].update(provides=["order_id"]), "also a user slot"),
        (lambda r: r["actions"]["order_lookup"].update(provides=["bad name"]), "is not a name"),
        (lambda r: r["actions"]["order_lookup"].update(secret="x"), "unknown keys ['secret']"),
        (lambda r: r["actions"]["order_lookup"].update(provides=["order_status"]), "'{delivery_date}' names no slot"),
    ],
)
def test_bad_actions_fail_at_load(tmp_path, change, message):
    raw = copy.deepcopy(WITH_ACTION)
    change(raw)
    with pytest.raises(DomainError, match=re.escape(message)):
        load_domain(write_domain(tmp_path, raw))


def test_readme_action_example_loads(tmp_path):
    example = yaml.safe_load(readme_block("webhook-domain"))
    raw = yaml.safe_load(DEFAULT_DOMAIN_PATH.read_text())
    raw["actions"] = example["actions"]
    raw["intents"]["order_status"].update(example["intents"]["order_status"])
    domain = load_domain(write_domain(tmp_path, raw))
    assert domain.intents["order_status"].action == "order_lookup"
    assert domain.actions["order_lookup"].provides == ("order_status", "delivery_date")


def test_packaged_intents_bind_client_tools(packaged):
    assert packaged.intents["order_status"].tool == "lookup_order"
    assert packaged.intents["greeting"].tool is None
