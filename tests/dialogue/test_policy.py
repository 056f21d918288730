import dataclasses

import pytest

from app.dialogue.domain import ActionSpec, load_domain
from app.dialogue.policy import ActionResult, Decision, decide, grounded
from app.dialogue.state import DialogueState
from app.dialogue.tracker import TurnAnalysis, record_action

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


def test_handoff_turn_passes_on_and_later_turns_say_a_person_will_answer():
    handing = TurnAnalysis(act="human_agent", act_score=0.9, asked_slots=(), filled=(), handed_over=True)
    decision = decide(state(intent="human_agent", handed_off=True), handing, DOMAIN)
    assert decision.action == "handoff" and decision.draft == DOMAIN.handoff_response
    later = decide(state(intent="complaint", handed_off=True), QUIET, DOMAIN)
    assert later.action == "handoff" and later.draft == DOMAIN.handed_off_response


def test_handoff_that_did_not_reach_anyone_says_so():
    decision = decide(state(handed_off=True), QUIET, DOMAIN, result=ActionResult(ok=False))
    assert decision.draft == DOMAIN.handoff_failed_response


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


ACTION_DOMAIN = dataclasses.replace(
    DOMAIN,
    intents={**DOMAIN.intents, "order_status": dataclasses.replace(
        DOMAIN.intents["order_status"], action="order_lookup",
        response="Order {order_id} is {order_status} and arrives {delivery_date}.")},
    actions={"order_lookup": ActionSpec("order_lookup", "http://127.0.0.1:9/", 1.0, 1,
                                        ("order_status", "delivery_date"))},
)
ASKED = state(intent="order_status", slots={"order_id": "A7Q-4412"}, turns=3)


def test_filled_intent_with_an_action_asks_for_the_call_first():
    decision = decide(ASKED, QUIET, ACTION_DOMAIN)
    assert decision.action == "call_action" and decision.call == "order_lookup"


def test_action_answer_is_stated_and_required():
    answered = ASKED.model_copy(deep=True)
    result = ActionResult(ok=True, slots={"order_status": "shipped", "delivery_date": "Friday"},
                          facts={"carrier": "DHL"})
    record_action(answered, ACTION_DOMAIN.actions["order_lookup"].provides, result.slots)
    assert answered.slot_sources["order_status"].modality == "action"
    decision = decide(answered, QUIET, ACTION_DOMAIN, result=result)
    assert decision.action == "respond" and decision.call is None
    assert decision.draft == "Order A7Q-4412 is shipped and arrives Friday. Carrier: DHL."
    assert set(decision.required) == {"A7Q-4412", "shipped", "Friday", "DHL"}
    assert grounded(decision.draft, decision, ACTION_DOMAIN)
    assert not grounded("Order A7Q-4412 is shipped and arrives Friday.", decision, ACTION_DOMAIN)  # dropped DHL


def test_backend_down_gives_the_unavailable_reply():
    decision = decide(ASKED, QUIET, ACTION_DOMAIN, result=ActionResult(ok=False))
    assert decision.action == "action_unavailable" and decision.draft == ACTION_DOMAIN.action_failed_response
    assert grounded(decision.draft, decision, ACTION_DOMAIN)
    assert not grounded("Your order has shipped.", decision, ACTION_DOMAIN)


def test_a_failed_or_new_call_drops_what_an_earlier_one_provided():
    answered = ASKED.model_copy(deep=True)
    record_action(answered, ("order_status", "delivery_date"), {"order_status": "shipped", "delivery_date": "Fri"})
    record_action(answered, ("order_status", "delivery_date"), {})
    assert answered.slots == {"order_id": "A7Q-4412"} and set(answered.slot_sources) == set()
