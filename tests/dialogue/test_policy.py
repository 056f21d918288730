import pytest

from app.dialogue.domain import load_domain
from app.dialogue.policy import Decision, decide, grounded
from app.dialogue.state import DialogueState
from app.dialogue.tracker import TurnAnalysis

DOMAIN = load_domain()
QUIET = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=())


def state(**kwargs) -> DialogueState:
    return DialogueState(**kwargs)


def test_missing_required_slot_is_asked_for():
    decision = decide(state(intent="damaged_item", slots={"product": "lamp"}), QUIET, DOMAIN)
    assert decision.action == "ask_slot" and decision.requested_slot == "order_id"
    assert decision.draft == DOMAIN.slots["order_id"].prompt


def test_filled_intent_responds_with_its_facts():
    decision = decide(state(intent="damaged_item", slots={"product": "lamp", "order_id": "A7Q-4412"}), QUIET, DOMAIN)
    assert decision.action == "respond"
    assert "A7Q-4412" in decision.draft and "lamp" in decision.draft
    assert set(decision.required) == {"A7Q-4412", "lamp"}


def test_recall_states_the_asked_slot():
    asked = TurnAnalysis(act="ask_recall", act_score=0.9, asked_slots=("order_id",), filled=())
    decision = decide(state(intent="damaged_item", slots={"order_id": "A7Q-4412", "email": "a@b.co"}), asked, DOMAIN)
    assert decision.action == "recall"
    assert decision.draft == "Your order number is A7Q-4412."
    assert decision.required == ("A7Q-4412",)


def test_recall_of_an_unknown_slot_asks_for_it():
    asked = TurnAnalysis(act="ask_recall", act_score=0.9, asked_slots=("email",), filled=())
    decision = decide(state(intent="billing"), asked, DOMAIN)
    assert decision.action == "ask_slot" and decision.requested_slot == "email"


def test_handed_off_session_says_a_person_will_answer():
    decision = decide(state(intent="complaint", handed_off=True), QUIET, DOMAIN)
    assert decision.action == "handoff" and decision.draft == DOMAIN.handoff_response


def test_details_without_an_intent_are_acknowledged():
    photo = TurnAnalysis(act=None, act_score=0.0, asked_slots=(), filled=("order_id",))
    decision = decide(state(slots={"order_id": "A7Q-4412"}), photo, DOMAIN)
    assert decision.action == "acknowledge" and decision.required == ("A7Q-4412",)
    assert "order number A7Q-4412" in decision.draft


def test_no_intent_falls_back():
    assert decide(state(), QUIET, DOMAIN).action == "fallback"


FACTS = Decision("recall", "Your order number is A7Q-4412.", {"order_id": "A7Q-4412"}, required=("A7Q-4412",))


@pytest.mark.parametrize(
    ("reply", "ok"),
    [
        ("Sure! Your order number is A7Q-4412.", True),
        ("your order number is a7q-4412", True),
        ("Your order number is 12345.", False),  # dropped the fact
        ("Your order is A7Q-4412, or maybe KX-90817.", False),  # invented another id
        ("", False),
        ("A7Q-4412 \x07\x00", False),
        ("A7Q-4412 I'm sorry. I'm sorry. I'm sorry. I'm sorry.", False),
    ],
)
def test_grounded_checks_facts_inventions_and_garbage(reply, ok):
    assert grounded(reply, FACTS, DOMAIN) is ok


def test_grounded_ask_must_name_the_slot():
    decision = decide(state(intent="damaged_item", slots={"product": "lamp"}), QUIET, DOMAIN)
    assert grounded("Could you tell me your order number?", decision, DOMAIN)
    assert not grounded("How are you today?", decision, DOMAIN)


def test_grounded_handoff_must_mention_a_person():
    decision = decide(state(handed_off=True), QUIET, DOMAIN)
    assert grounded("A member of our team will take it from here.", decision, DOMAIN)
    assert not grounded("Have a nice day.", decision, DOMAIN)


def test_categorical_values_are_written_as_words():
    decision = decide(state(intent="technical_support", slots={"product": "coffee_maker"}), QUIET, DOMAIN)
    assert "coffee maker" in decision.draft and "coffee_maker" not in decision.draft
    assert decision.required == ("coffee maker",)
