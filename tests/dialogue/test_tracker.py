"""The tracker with the real MiniLM encoder: intents by nearest examples, slots kept across turns."""

import pytest

from app.dialogue.policy import decide
from app.dialogue.state import DialogueState
from tests.dialogue.turns import say


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Hello, is anybody there?", "greeting"),
        ("Where is my package? It still hasn't arrived", "order_status"),
        ("the mug I ordered came smashed to pieces", "damaged_item"),
        ("I want to return these shoes", "return_item"),
        ("I'd like my money back please", "refund_request"),
        ("you billed my card two times", "billing"),
        ("my laptop won't turn on", "technical_support"),
        ("let me speak to a real person", "human_agent"),
        ("ok thanks, bye", "goodbye"),
    ],
)
def test_intents_of_unseen_phrasings(tracker, encoder, text, intent):
    new, _ = say(tracker, encoder, DialogueState(), text)
    assert new.intent == intent


def test_slots_persist_and_meta_turns_keep_the_task(tracker, encoder):
    s, _ = say(tracker, encoder, DialogueState(), "My lamp arrived broken")
    s.requested_slot = "order_id"
    s, analysis = say(tracker, encoder, s, "sure, it's four five one two", modality="audio")
    assert s.intent == "damaged_item" and analysis.filled == ("order_id",)
    assert s.slots == {"product": "lamp", "issue": "damaged", "order_id": "4512"}
    assert s.slot_sources["order_id"].modality == "audio" and s.slot_sources["order_id"].turn == 2
    assert s.requested_slot is None
    s, analysis = say(tracker, encoder, s, "what was my order number?")
    assert analysis.act == "ask_recall" and analysis.asked_slots == ("order_id",)
    assert s.intent == "damaged_item" and s.slots["order_id"] == "4512" and s.turns == 3


def test_a_bare_value_answers_the_open_tasks_missing_slot_though_we_asked_for_nothing(tracker, encoder):
    """The customer sends the order number unprompted after an answer that asked for nothing."""
    s, _ = say(tracker, encoder, DialogueState(), "my parcel is a week late")
    assert s.intent == "order_status" and s.requested_slot is None
    s, analysis = say(tracker, encoder, s, "4410")
    assert s.slots["order_id"] == "4410" and analysis.filled == ("order_id",) and s.intent == "order_status"
    s2, _ = say(tracker, encoder, DialogueState(intent="order_status"), "I ordered 2 lamps")
    assert "order_id" not in s2.slots  # a number inside a sentence still needs its words or our question


def test_where_is_it_after_a_shipping_label_photo_asks_for_that_orders_status(tracker, encoder):
    s, _ = say(tracker, encoder, DialogueState(), "SHIP TO: J. Ruiz\nOrder 8842\nTracking 1Z999AA10123456784",
               modality="image")
    s, analysis = say(tracker, encoder, s, "where is it?")
    assert analysis.act == "order_status" and s.intent == "order_status" and s.slots["order_id"] == "8842"
    shot, _ = say(tracker, encoder, DialogueState(), "Order 5520\nExpected delivery: Friday", modality="image")
    shot, analysis = say(tracker, encoder, shot, "is it going to be on time?")
    assert analysis.act == "order_status" and shot.slots == {"order_id": "5520", "expected_day": "Friday"}


def test_a_screen_mentioned_without_its_photo_is_a_technical_problem_not_an_unknown_question(tracker, encoder):
    s, analysis = say(tracker, encoder, DialogueState(), "my printer shows this")
    assert analysis.act == "technical_support" and s.slots == {"product": "printer"}
    s, analysis = say(tracker, encoder, DialogueState(), "look at this error")
    assert analysis.act == "technical_support"


def test_advice_that_did_not_help_keeps_the_task_and_offers_a_person(tracker, encoder):
    s, _ = say(tracker, encoder, DialogueState(), "my printer shows this")
    s, analysis = say(tracker, encoder, s, "ok I did that and it still says it")
    assert analysis.act == "not_fixed" and s.intent == "technical_support"
    decision = decide(s, analysis, tracker.domain)
    assert decision.action == "not_fixed" and "person" in decision.draft
    alone, analysis = say(tracker, encoder, DialogueState(), "it's still broken")
    assert analysis.act == "not_fixed" and decide(alone, analysis, tracker.domain).action != "not_fixed"


def test_a_statement_naming_a_slot_is_not_a_recall(tracker, encoder):
    _, analysis = say(tracker, encoder, DialogueState(intent="order_status"), "My order number is 4512.")
    assert analysis.act == "inform"


def test_strong_negative_sentiment_hands_off(tracker, encoder):
    calm, _ = say(tracker, encoder, DialogueState(), "my order is late")
    assert not calm.handed_off
    angry, _ = say(tracker, encoder, calm, "This is ridiculous, worst service ever, I am furious and disgusted")
    assert angry.sentiment == "negative" and angry.handed_off


def test_reporting_damage_is_not_anger(tracker, encoder):
    for text in ("my parcel was stolen and the box was damaged", "the headphones arrived broken, very disappointed"):
        new, _ = say(tracker, encoder, DialogueState(), text)
        assert not new.handed_off, text


def test_return_request_is_not_damage(tracker, encoder):
    new, _ = say(tracker, encoder, DialogueState(), "I'd like to return my blender")
    assert new.intent == "return_item"


def test_a_follow_up_question_names_what_it_asks_for(tracker, encoder):
    s, _ = say(tracker, encoder, DialogueState(), "where is my order 4512?")
    s, analysis = say(tracker, encoder, s, "what's the tracking number?")
    assert s.intent == "order_status" and analysis.asked_slots == ("tracking_number",)
    s, analysis = say(tracker, encoder, s, "and when will it arrive?")
    assert analysis.asked_slots == ("expected_day",)
    s, analysis = say(tracker, encoder, s, "thanks!")
    assert analysis.act == "goodbye" and analysis.asked_slots == ()


def test_asking_for_a_person_mid_task_hands_off(tracker, encoder):
    """"fine, get me a person" scored under the switch score beside an open order question (2026-12-02)."""
    s, _ = say(tracker, encoder, DialogueState(), "where is my order 4512?")
    s, analysis = say(tracker, encoder, s, "fine, get me a person")
    assert analysis.act == "human_agent" and s.intent == "human_agent" and s.handed_off


def test_a_person_named_in_passing_is_no_handoff(tracker, encoder):
    s, _ = say(tracker, encoder, DialogueState(), "where is my order 4512?")
    s, _ = say(tracker, encoder, s, "can a person sign for it?")
    assert s.intent == "order_status" and not s.handed_off


def test_thanks_while_a_detail_is_awaited_keeps_the_task(tracker, encoder):
    s, _ = say(tracker, encoder, DialogueState(), "I was charged twice")
    s.requested_slot = "email"
    s, _ = say(tracker, encoder, s, "ok thank you")
    assert s.intent == "billing"
