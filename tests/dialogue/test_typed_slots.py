"""Slots typed by their context, through the tracker: OCR text of screens, receipts and labels, and ids,
emails and codes typed or transcribed."""

import pytest

from app.dialogue.state import DialogueState
from tests.dialogue.turns import say

PRINTER_SCREEN = "ERROR E-203\nPRINTER OFFLINE\nCheck the cable and restart"
SHIPPED = "Your order 5520-Z has shipped\nCarrier: UPS\nExpected: Friday"


def test_an_error_screen_is_an_error_code_and_technical_support(tracker, encoder):
    state, analysis = say(tracker, encoder, DialogueState(), PRINTER_SCREEN, "image")
    assert "order_id" not in state.slots
    assert state.slots["error_code"] == "E-203" and state.slots["product"] == "printer"
    assert state.intent == "technical_support" and analysis.act == "technical_support"


def test_an_error_screen_sent_while_ordering_switches_to_technical_support(tracker, encoder):
    state, _ = say(tracker, encoder, DialogueState(), "Where is my order? The order number is 4512.")
    state, _ = say(tracker, encoder, state, PRINTER_SCREEN, "image")
    assert state.slots["order_id"] == "4512" and state.slots["error_code"] == "E-203"
    assert state.intent == "technical_support"


@pytest.mark.parametrize(
    ("text", "modality", "order_id"),
    [
        ("My order number is 1111-A", "text", "1111-A"),
        ("My order number is 1111-A.", "audio", "1111-A"),
        ("My order number is 1111 A.", "audio", "1111-A"),
        ("Order B-77120 never came", "text", "B-77120"),
        ("My order number is B-77120.", "audio", "B-77120"),
        ("Order ref: B-77120\nTracking 1Z 999 AA1", "image", "B-77120"),
    ],
)
def test_ids_keep_their_letters(tracker, encoder, text, modality, order_id):
    state, _ = say(tracker, encoder, DialogueState(), text, modality)
    assert state.slots["order_id"] == order_id


def test_a_shipping_notice_gives_the_order_and_the_expected_day(tracker, encoder):
    state, _ = say(tracker, encoder, DialogueState(), SHIPPED, "image")
    assert state.slots["order_id"] == "5520-Z" and state.slots["expected_day"] == "Friday"
    assert state.slot_sources["expected_day"].modality == "image"


def test_a_tracking_page_gives_its_new_estimate_as_the_expected_day(tracker, encoder):
    page = "Tracking 1Z999AA10123456784\nStatus: Delayed\nNew estimate: Monday"
    state, _ = say(tracker, encoder, DialogueState(), page, "image")
    assert state.slots["expected_day"] == "Monday" and state.slots["tracking_number"] == "1Z999AA10123456784"


def test_a_label_gives_the_tracking_number_apart_from_the_order(tracker, encoder):
    state, _ = say(tracker, encoder, DialogueState(), "SHIP TO: J. Smith\nOrder QM-20451\nTracking 1Z 999 AA1", "image")
    assert state.slots["order_id"] == "QM-20451" and state.slots["tracking_number"] == "1Z999AA1"


def test_a_receipt_card_line_gives_the_amount_and_no_id(tracker, encoder):
    state, _ = say(tracker, encoder, DialogueState(), "ACME STORE\nVISA ****1234 37.50", "image")
    assert state.slots == {"amount": "37.50"}


@pytest.mark.parametrize(
    ("text", "modality"),
    [("my email is jane dot doe at example dot com", "text"),
     ("My email is jane dot doe at example dot com.", "audio"),
     ("My email is jane.doe at example.com.", "audio")],
)
def test_a_spoken_email(tracker, encoder, text, modality):
    state, _ = say(tracker, encoder, DialogueState(), text, modality)
    assert state.slots["email"] == "jane.doe@example.com"


@pytest.mark.parametrize(
    ("text", "order_id"),
    [
        ("K X nine zero eight one seven", "KX90817"),
        ("K-X-9-0-8-1-7.", "KX90817"),
        ("K X 9 0 8 1 7", "KX90817"),
        ("forty five twelve", "4512"),
        ("It's four five one two.", "4512"),
    ],
)
def test_spelled_letters_and_number_words_answer_the_order_question(tracker, encoder, text, order_id):
    asked = DialogueState(intent="order_status", requested_slot="order_id")
    state, _ = say(tracker, encoder, asked, text, "audio")
    assert state.slots["order_id"] == order_id and state.requested_slot is None
