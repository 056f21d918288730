"""Parley issue 14's cases through the server: typed, and as OCR text read off a rendered photo.

The tiny test decoder writes nonsense, so every reply is the policy's own wording."""

import base64

import pytest

from tests.samples import document, encoded, photo_of

PRINTER_SCREEN = document(["ERROR E-203", "PRINTER OFFLINE", "Check the cable and restart"], dark=True)
SHIPPED = document(["Your order 5520-Z has shipped", "Carrier: UPS", "Expected: Friday"])
LABEL = document(["SHIP TO: J. Smith", "Order ref: B-77120", "Tracking 1Z 999 AA1"])
RECEIPT = document(["ACME STORE", "Order No: 1111-A", "VISA ****1234 $37.50"])


async def post(client, session_id, *, text=None, image=None):
    body = {"text": text} if text else {}
    if image is not None:
        body["images"] = [{"data": base64.b64encode(image).decode()}]
    response = await client.post(f"/v1/sessions/{session_id}/turns", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_question_and_an_id_in_one_message(client, session_id):
    body = await post(client, session_id, text="Where is my order? The order number is 4512.")
    assert body["state"]["intent"] == "order_status" and body["state"]["slots"]["order_id"] == "4512"
    assert body["action"] == "respond" and "4512" in body["reply"]


async def test_an_error_screen_is_technical_support_not_an_order(client, session_id):
    body = await post(client, session_id, image=encoded(photo_of(PRINTER_SCREEN, degrees=4), "JPEG", quality=85))
    state = body["state"]
    assert "order_id" not in state["slots"] and state["slots"]["error_code"] == "E-203"
    assert state["intent"] == "technical_support" and state["slot_sources"]["error_code"]["modality"] == "image"


async def test_an_error_screen_with_a_question(client, session_id):
    body = await post(client, session_id, text="what does this mean?", image=encoded(PRINTER_SCREEN))
    assert body["state"]["intent"] == "technical_support" and "order_id" not in body["state"]["slots"]


@pytest.mark.parametrize(("text", "order_id"), [("My order number is 1111-A", "1111-A"),
                                                ("Order B-77120 never arrived", "B-77120")])
async def test_typed_ids_keep_their_letters(client, session_id, text, order_id):
    body = await post(client, session_id, text=text)
    assert body["state"]["slots"]["order_id"] == order_id


async def test_ocr_ids_keep_their_letters_and_card_lines_give_the_amount(client, session_id):
    body = await post(client, session_id, image=encoded(RECEIPT))
    assert body["state"]["slots"]["order_id"] == "1111-A" and body["state"]["slots"]["amount"] == "$37.50"
    label = await post(client, session_id, image=encoded(LABEL))
    assert label["state"]["slots"]["order_id"] == "B-77120" and label["state"]["slots"]["tracking_number"] == "1Z999AA1"


async def test_a_shipping_notice_gives_the_order_and_the_expected_day(client, session_id):
    body = await post(client, session_id, image=encoded(SHIPPED))
    state = body["state"]
    assert state["slots"]["order_id"] == "5520-Z" and state["slots"]["expected_day"] == "Friday"
    assert any("Friday" in note["text"] for note in state["evidence"])


@pytest.mark.parametrize("correction", ["Sorry, I gave you the wrong number. It is 4513.", "no, it's 4513",
                                        "I meant 4513", "no, not 4512, it's 4513"])
async def test_a_correction_replaces_the_order_number(client, session_id, correction):
    await post(client, session_id, text="Where is my order? The order number is 4512.")
    body = await post(client, session_id, text=correction)
    assert body["state"]["slots"]["order_id"] == "4513" and body["state"]["slot_sources"]["order_id"]["turn"] == 2
    assert body["state"]["intent"] == "order_status"
    assert "4513" in body["reply"] and "4512" not in body["reply"]


async def test_a_correction_read_off_a_photo(client, session_id):
    await post(client, session_id, text="Where is my order? The order number is 4512.")
    body = await post(client, session_id, text="sorry, wrong one, here is the receipt", image=encoded(RECEIPT))
    assert body["state"]["slots"]["order_id"] == "1111-A" and "1111-A" in body["reply"]


async def test_a_spoken_email_typed_out(client, session_id):
    await post(client, session_id, text="I was charged twice this month")
    body = await post(client, session_id, text="my email is jane dot doe at example dot com")
    assert body["state"]["slots"]["email"] == "jane.doe@example.com" and body["state"]["intent"] == "billing"


async def test_spelled_letters_answer_the_order_question(client, session_id):
    asked = await post(client, session_id, text="has my package shipped yet?")
    assert asked["state"]["requested_slot"] == "order_id"
    body = await post(client, session_id, text="K X nine zero eight one seven")
    assert body["state"]["slots"]["order_id"] == "KX90817"


async def test_no_refund_after_a_return_is_a_refund_request(client, session_id):
    body = await post(client, session_id, text="I sent the jacket back two weeks ago and there's still no refund")
    assert body["state"]["intent"] == "refund_request" and body["state"]["slots"]["product"] == "jacket"
