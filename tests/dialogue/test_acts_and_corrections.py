"""Several acts in one message, and corrections, through the tracker with the real MiniLM encoder.

Each case is said typed and as a Whisper transcript writes it (modality "audio")."""

import pytest

from app.dialogue.domain import load_domain
from app.dialogue.policy import decide
from app.dialogue.state import DialogueState
from tests.dialogue.turns import say

DOMAIN = load_domain()


@pytest.mark.parametrize(
    ("text", "modality"),
    [
        ("Where is my order? The order number is 4512.", "text"),
        ("Where is my order? The order number is 4512.", "audio"),  # Whisper punctuates
        ("where is my order the order number is 4512", "audio"),  # ... or not
        ("Where's my order? My order number is four five one two.", "audio"),
    ],
)
def test_a_question_and_an_id_in_one_message(tracker, encoder, text, modality):
    state, analysis = say(tracker, encoder, DialogueState(), text, modality)
    assert (state.intent, analysis.act) == ("order_status", "order_status")
    assert state.slots["order_id"] == "4512" and state.slot_sources["order_id"].modality == modality


@pytest.mark.parametrize("text", ["where is order 99812?", "Where is order A7Q-4412?", "where's order 4512"])
def test_a_question_naming_an_order_asks_about_it(tracker, encoder, text):
    """It resembles the inform example "order KX-55210", but it asks: the task it asks about is the act."""
    state, analysis = say(tracker, encoder, DialogueState(), text)
    assert (state.intent, analysis.act) == ("order_status", "order_status") and "order_id" in state.slots


@pytest.mark.parametrize("modality", ["text", "audio"])
def test_a_message_that_only_informs_stays_inform(tracker, encoder, modality):
    state, analysis = say(tracker, encoder, DialogueState(), "My order number is 1111-A.", modality)
    assert analysis.act == "inform" and state.intent is None and state.slots["order_id"] == "1111-A"


def test_small_talk_beside_a_task_yields_to_it(tracker, encoder):
    state, _ = say(tracker, encoder, DialogueState(), "Hi! My lamp arrived broken. Can you help?")
    assert state.intent == "damaged_item"
    state, analysis = say(tracker, encoder, state, "It's A7Q-4412. Thanks.")
    assert analysis.act == "inform" and state.intent == "damaged_item" and state.slots["order_id"] == "A7Q-4412"


@pytest.mark.parametrize("modality", ["text", "audio"])
def test_a_refund_still_missing_after_a_return_is_a_refund_request(tracker, encoder, modality):
    text = "I sent the jacket back two weeks ago and there's still no refund"
    state, _ = say(tracker, encoder, DialogueState(), text, modality)
    assert state.intent == "refund_request" and state.slots["product"] == "jacket"


@pytest.mark.parametrize(
    ("correction", "modality"),
    [
        ("Sorry, I gave you the wrong number. It is 4513.", "text"),
        ("Sorry, I gave you the wrong number. It is four five one three.", "audio"),
        ("no, it's 4513", "text"),
        ("No, it's 4513.", "audio"),
        ("I meant 4513", "text"),
        ("I meant 4513.", "audio"),
        ("no, not 4512, it's 4513", "text"),
        ("I meant 4513, not 4512", "text"),
        ("Sorry, it should be 4513", "text"),
        ("oops, make that 4513", "text"),
        ("wrong order number, the right one is 4513", "text"),
        ("Sorry, I gave you the wrong number. It's 4-5-1-3.", "audio"),
        ("no wait, not 4512, it's 4513", "text"),
        ("hold on, not 4512, it's 4513", "text"),
        ("Sorry, I meant 4.5.13", "audio"),  # Whisper's dots between spoken digits
    ],
)
def test_a_correction_replaces_the_slot_and_the_reply_says_which_value_stands(tracker, encoder, correction, modality):
    state, _ = say(tracker, encoder, DialogueState(), "Where is my order? The order number is 4512.")
    state, analysis = say(tracker, encoder, state, correction, modality)
    assert state.slots["order_id"] == "4513" and analysis.corrected == ("order_id",)
    assert state.slot_sources["order_id"].turn == 2 and state.slot_sources["order_id"].modality == modality
    assert state.intent == "order_status"  # "I gave you the wrong number" is no new task
    decision = decide(state, analysis, DOMAIN)
    assert "your order number is now 4513" in decision.draft and "4512" not in decision.draft
    assert "4513" in decision.required


def test_a_correction_naming_its_slot_corrects_that_one(tracker, encoder):
    state, _ = say(tracker, encoder, DialogueState(), "I was charged twice, my email is jane@example.com")
    state, _ = say(tracker, encoder, state, "The order number is 4512.")
    state, analysis = say(tracker, encoder, state, "Sorry, wrong email. It's jane.doe@example.com")
    assert state.slots["email"] == "jane.doe@example.com" and state.slots["order_id"] == "4512"
    assert analysis.corrected == ("email",)


def test_a_first_value_is_no_correction(tracker, encoder):
    state, analysis = say(tracker, encoder, DialogueState(intent="order_status"), "No, it's 4513")
    assert analysis.corrected == () and "now" not in decide(state, analysis, DOMAIN).draft


def test_a_further_issue_is_news_not_a_correction(tracker, encoder):
    state, _ = say(tracker, encoder, DialogueState(), "My lamp arrived broken")
    state, analysis = say(tracker, encoder, state, "and it was late too")
    assert state.slots["issue"] == "late" and analysis.corrected == ()


def test_a_detail_after_a_greeting_is_noted_not_greeted_again(tracker, encoder):
    state, _ = say(tracker, encoder, DialogueState(), "hi there")
    state, analysis = say(tracker, encoder, state, "my order number is 4512")
    decision = decide(state, analysis, DOMAIN)
    assert decision.action == "acknowledge" and "4512" in decision.draft and "Parley" not in decision.draft


def test_a_detail_the_answered_task_does_not_need_is_noted_not_answered_again(tracker, encoder):
    state, _ = say(tracker, encoder, DialogueState(), "I was charged twice for my subscription")
    state, analysis = say(tracker, encoder, state, "my email is jo_smith@example.org")
    answered = decide(state, analysis, DOMAIN)
    assert answered.action == "respond" and "jo_smith@example.org" in answered.draft  # typed values keep their _
    state, analysis = say(tracker, encoder, state, "oh and the order was B55-1029")
    noted = decide(state, analysis, DOMAIN)
    assert noted.action == "acknowledge" and "B55-1029" in noted.draft and answered.draft not in noted.draft
    assert "B55-1029" in noted.required
