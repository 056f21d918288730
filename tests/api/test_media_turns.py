"""Voice, image and mixed turns through the app with the real default encoders."""

import base64

import pytest
from PIL import Image

from tests.samples import document, encoded, photo_of, speech_wav

RECEIPT = document(["ACME STORE", "Order No: A7Q-4412", "Total: $37.50"])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def post(client, session_id, **kwargs):
    response = await client.post(f"/v1/sessions/{session_id}/turns", **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def test_voice_turn_fills_the_order_id(client, session_id):
    await post(client, session_id, json={"text": "I want to check the status of my order"})
    body = await post(client, session_id, json={"audio": {"data": b64(speech_wav("my order number is four five one two"))}})
    assert "4512" in body["transcript"].replace(" ", "") or "four five one two" in body["transcript"].lower()
    assert body["state"]["slots"]["order_id"] == "4512"
    assert body["state"]["slot_sources"]["order_id"]["modality"] == "audio"
    assert body["state"]["intent"] == "order_status"
    history = (await client.get(f"/v1/sessions/{session_id}")).json()["history"]
    assert history[-2]["modalities"] == ["audio"] and history[-2]["transcript"] == body["transcript"]


async def test_image_turn_as_multipart_reads_the_receipt(client, session_id):
    files = {"image": ("receipt.png", encoded(RECEIPT), "image/png")}
    body = await post(client, session_id, data={"text": "my lamp arrived broken, here is the receipt"}, files=files)
    assert "A7Q-4412" in body["images"][0]["ocr_text"]
    assert body["state"]["slots"]["order_id"] == "A7Q-4412"
    assert body["state"]["slot_sources"]["order_id"]["modality"] == "image"
    assert body["state"]["intent"] == "damaged_item"
    # A later text question is answered from what was read in the photo.
    later = await post(client, session_id, json={"text": "what was the total on my receipt?"})
    assert "37.50" in later["reply"]


async def test_rotated_jpeg_photo_as_data_url(client, session_id):
    jpeg = encoded(photo_of(RECEIPT, degrees=7), "JPEG", quality=85)
    body = await post(client, session_id, json={"images": [{"data": "data:image/jpeg;base64," + b64(jpeg)}]})
    assert body["state"]["slots"]["order_id"] == "A7Q-4412"


async def test_light_on_dark_screen(client, session_id):
    screen = document(["Error 0x80070005", "Order KX-90817"], dark=True)
    body = await post(client, session_id, json={"images": [{"data": b64(encoded(screen))}]})
    assert body["state"]["slots"]["order_id"] == "KX-90817"


async def test_mixed_photo_and_voice_turn(client, session_id):
    files = {
        "image": ("receipt.jpg", encoded(RECEIPT, "JPEG", quality=90), "image/jpeg"),
        "audio": ("voice.wav", speech_wav("I would like a refund for this order please"), "audio/wav"),
    }
    body = await post(client, session_id, files=files)
    assert "refund" in body["transcript"].lower()
    assert body["state"]["intent"] == "refund_request"
    assert body["state"]["slots"]["order_id"] == "A7Q-4412"
    assert set((await client.get(f"/v1/sessions/{session_id}")).json()["history"][0]["modalities"]) == {"image", "audio"}


def _bomb() -> bytes:
    return encoded(Image.new("1", (9000, 9000)))  # 81 MP, a few kB compressed


BAD_MEDIA = [
    ("corrupt image", {"json": {"images": [{"data": b64(b"\x89PNG\r\n\x1a\n not really")}]}}, 422),
    ("truncated png", {"json": {"images": [{"data": b64(encoded(RECEIPT)[:200])}]}}, 422),
    ("too many pixels", {"json": {"images": [{"data": b64(_bomb())}]}}, 413),
    ("bmp", {"json": {"images": [{"data": b64(encoded(RECEIPT, "BMP"))}]}}, 415),
    ("too many images", {"json": {"images": [{"data": b64(encoded(Image.new("RGB", (8, 8))))}] * 5}}, 413),
    ("remote url", {"json": {"images": [{"data": "https://example.com/receipt.png"}]}}, 422),
    ("bad base64", {"json": {"images": [{"data": "data:image/png;base64,@@@notbase64"}]}}, 422),
    ("text as audio", {"json": {"audio": {"data": b64(b"hello, this is not audio at all")}}}, 422),
    ("image as audio", {"files": {"audio": ("x.wav", encoded(RECEIPT), "audio/wav")}}, 422),
    ("empty audio file", {"files": {"audio": ("x.wav", b"", "audio/wav")}}, 422),
    ("two audio clips", {"files": [("audio", ("a.wav", b"RIFF", "audio/wav")), ("audio", ("b.wav", b"RIFF", "audio/wav"))]}, 422),
    ("image as a plain field", {"data": {"image": "not a file"}}, 422),
]


@pytest.mark.parametrize(("case", "request_args", "status"), BAD_MEDIA, ids=[c[0] for c in BAD_MEDIA])
async def test_bad_media_is_refused_and_changes_nothing(client, session_id, case, request_args, status):
    await post(client, session_id, json={"text": "Where is my order A7Q-4412?"})
    before = (await client.get(f"/v1/sessions/{session_id}")).json()
    response = await client.post(f"/v1/sessions/{session_id}/turns", **request_args)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]
    assert (await client.get(f"/v1/sessions/{session_id}")).json() == before
