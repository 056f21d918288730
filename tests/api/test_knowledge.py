"""Questions through the app: the packaged knowledge base, real OCR and the real MiniLM encoder.

The tiny decoder writes nonsense, so each reply is the policy's own wording: these check what it answers with."""

import base64

from tests.samples import document, encoded, photo_of

PRINTER_SCREEN = document(["ERROR E-203", "PRINTER OFFLINE", "Check the cable and restart"], dark=True)
E203 = "E-203 means the printer is offline: check the cable and restart it"


async def say(client, session_id, **body) -> dict:
    response = await client.post(f"/v1/sessions/{session_id}/turns", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_photo_of_an_error_screen_then_what_it_means(client, session_id):
    photo = base64.b64encode(encoded(photo_of(PRINTER_SCREEN, degrees=4), "JPEG", quality=85)).decode()
    shown = await say(client, session_id, images=[{"data": photo}])
    assert "E-203" in shown["images"][0]["ocr_text"]
    assert shown["action"] == "answer" and f"The photo shows error E-203. {E203}" in shown["reply"]
    asked = await say(client, session_id, text="What does this error mean and how do I fix it?")
    assert asked["action"] == "answer" and E203 in asked["reply"]
    history = (await client.get(f"/v1/sessions/{session_id}")).json()["history"]
    assert history[-1]["text"] == asked["reply"] and history[-1]["action"] == "answer"


async def test_a_policy_question(client, session_id):
    body = await say(client, session_id, text="how long do refunds take?")
    assert body["action"] == "answer"
    assert "within 5 to 7 business days" in body["reply"]
    assert body["state"]["intent"] is None  # a question starts no refund


async def test_a_question_the_knowledge_base_cannot_answer(client, session_id):
    body = await say(client, session_id, text="Do you sell gift cards?")
    assert body["action"] == "unknown_question"
    assert "I don't know that one" in body["reply"] and "ask for a person" in body["reply"]
    assert body["state"]["handed_off"] is False  # offered, not done


async def test_an_off_topic_question(client, session_id):
    body = await say(client, session_id, text="what's the weather like today?")
    assert body["action"] == "off_topic"
    assert "I'm Parley" in body["reply"] and "orders" in body["reply"]
