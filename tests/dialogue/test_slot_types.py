"""The slot type registry, labels that type values, and a type added by a domain file."""

import pytest
import yaml

from app.dialogue.domain import DomainError, load_domain
from app.dialogue.slot_types import SLOT_TYPES, Labels, SlotType, register, slot_type
from app.dialogue.slots import extract_slots
from tests.readme import readme_block


@pytest.fixture(scope="module")
def slots():
    return load_domain().slots


def values(text, slots, **kwargs):
    return {name: v.value for name, v in extract_slots(text, slots, **kwargs).items()}


def test_every_built_in_type_is_registered_and_normalises():
    assert {"order_id", "error_code", "tracking_number", "email", "phone", "amount", "date", "product", "issue",
            "category"} <= set(SLOT_TYPES)
    assert slot_type("order_id").normalise("kx 90817") == "KX90817"
    assert slot_type("error_code").normalise("0X80070005") == "0x80070005"
    assert slot_type("phone").normalise("+1 (415) 555-0100") == "+14155550100"
    assert slot_type("amount").normalise("45 dollars and 99 cents") == "$45.99"
    assert slot_type("date").normalise("Mon, 12 Aug") == "Monday 12 August"
    assert slot_type("product", ("product",), (("coffee_maker", ("coffee machine",)),)).normalise("coffee machines") \
        == "coffee_maker"


def test_a_name_is_registered_once():
    class Other(SlotType):
        name = "order_id"

    with pytest.raises(ValueError, match="already registered"):
        register(Other)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ERROR E-203\nPRINTER OFFLINE", {"error_code": "E-203", "product": "printer"}),
        ("Error code: 0x80070005", {"error_code": "0x80070005"}),
        ("Error 0x80070005\nOrder KX-90817", {"error_code": "0x80070005", "order_id": "KX-90817"}),
        ("the order code is AB-5521", {"order_id": "AB-5521"}),  # "order code" is longer than "code"
        ("Order # 4512", {"order_id": "4512"}),
        ("Tracking 1Z 999 AA1", {"tracking_number": "1Z999AA1"}),
        ("tracking number is 1Z999AA10123456784", {"tracking_number": "1Z999AA10123456784"}),
        ("my zip code is 94107", {}),  # a label no slot takes
        ("Card **** 1234  $37.50", {"amount": "$37.50"}),
        ("Subtotal: $30.00\nTotal: $37.50", {"amount": "$37.50"}),  # the labelled total, not the first price
        ("Expected: Friday", {"expected_day": "Friday"}),
        ("Arrives Mon, 12 Aug", {"expected_day": "Monday 12 August"}),
        ("Delivery: March 3, 2025", {"expected_day": "March 3, 2025"}),
        ("Date: 2025-03-01\nOrder No: 1111-A", {"order_id": "1111-A"}),  # a print date answers nothing
        ("Your order 5520-Z has shipped", {"order_id": "5520-Z"}),
        # A code after another type's label that this type does not take is still an order id.
        ("my delivery A7Q-4412 hasn't arrived", {"order_id": "A7Q-4412"}),
        ("my zip code is KX90817", {}),
    ],
)
def test_values_are_typed_by_their_labels(slots, text, expected):
    assert values(text, slots) == expected


def test_a_date_answers_the_question_for_it(slots):
    assert values("friday", slots, requested_slot="expected_day") == {"expected_day": "Friday"}
    assert values("friday", slots) == {}


def test_labels_prefer_the_longest_and_the_nearest():
    labels = Labels("the order code is AB-5521", {"order_id": ("order code", "order"), "error_code": ("code",)})
    assert labels.type_before("the order code is AB-5521", 18, ("is",)) == "order_id"


def test_a_domain_file_adds_a_slot_type_from_its_own_module(tmp_path):
    raw = {
        "name": "garage",
        "fallback_response": "Sorry?",
        "handoff_response": "Passing you to a person.",
        "slot_type_modules": ["tests.dialogue.plate_type"],
        "slots": {
            "plate": {"type": "number_plate", "prompt": "What is the registration?", "mentions": ["registration"]},
            "booking": {"type": "order_id", "prompt": "Booking number?", "mentions": ["booking"]},
            "colour": {"type": "category", "prompt": "Which colour?", "values": {"red": ["crimson"], "blue": []}},
        },
        "intents": {"service": {"examples": ["book a service"], "required_slots": ["plate"],
                                "response": "Booked {plate}."}},
    }
    path = tmp_path / "garage.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    domain = load_domain(path)
    assert domain.slots["plate"].type == "number_plate"
    found = extract_slots("registration AB12 CDE, booking 4471, the crimson one", domain.slots)
    assert {name: v.value for name, v in found.items()} == {"plate": "AB12CDE", "booking": "4471", "colour": "red"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slot_type_modules": ["no_such_module_here"]}, "cannot be imported"),
        ({"slot_type_modules": "tests.dialogue.plate_type"}, "must be a list"),
        ({"slots": {"x": {"type": "licence", "prompt": "?"}}}, "unknown type 'licence'"),
    ],
)
def test_bad_slot_types_fail_at_load(tmp_path, change, message):
    raw = {"name": "t", "fallback_response": "Sorry?", "handoff_response": "Person.",
           "slots": {"order_id": {"type": "order_id", "prompt": "Order?"}},
           "intents": {"hi": {"examples": ["hi"], "response": "Hi."}}} | change
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(DomainError, match=message):
        load_domain(path)


def test_an_intent_implied_by_a_slot_must_name_one(tmp_path):
    raw = {"name": "t", "fallback_response": "Sorry?", "handoff_response": "Person.",
           "slots": {"order_id": {"type": "order_id", "prompt": "Order?"}},
           "intents": {"hi": {"examples": ["hi"], "response": "Hi.", "implied_by": ["error_code"]}}}
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(DomainError, match="implied_by slot 'error_code'"):
        load_domain(path)


def test_readme_slot_type_example_loads_and_extracts(tmp_path, monkeypatch):
    (tmp_path / "my_types.py").write_text(readme_block("slot-type-module"), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = {"name": "devices", "fallback_response": "Sorry?", "handoff_response": "Person.",
           "intents": {"hi": {"examples": ["hi"], "response": "Hi."}}} | yaml.safe_load(readme_block("slot-type-domain"))
    path = tmp_path / "devices.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    domain = load_domain(path)
    found = extract_slots("The s/n is sn-0042117, order 4471", domain.slots)
    assert {name: v.value for name, v in found.items()} == {"serial": "SN0042117"}


@pytest.mark.parametrize("text", ["*" * 2000, "1" * 1999 + "_", "1Z " * 600 + "_", "K-" * 999 + "x_"])
def test_hostile_runs_are_read_in_linear_time(slots, text):
    # Nested quantifiers over such runs once took exponential time (a stuck worker): these return at all.
    assert "order_id" not in extract_slots(text, slots)
