"""VisionEncoder on images drawn here: OCR of ids (dark-on-light, light-on-dark, a rotated JPEG
photo), QR codes, image facts, faces/emotions, and the optional transformers models."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.dialogue.domain import load_domain
from app.dialogue.slots import extract_slots
from models.faces import EMOTIONS, FaceReader
from models.registry import resolve_placement
from models.vision import ImageReading, load_vision_encoder
from tests.factories import tiny_captioner, tiny_vit
from tests.samples import document, noise, photo_of

CPU = resolve_placement("cpu")


def receipt() -> Image.Image:
    return document(["ACME Store", "Order No: A7Q-4412", "Total: $37.50"], size=(640, 300), background="white",
                    ink="black", font_px=32, margin=30, line_px=64)


def error_screen() -> Image.Image:
    return document(["Error 0x80070005", "Order KX-90817"], size=(720, 260), background=(20, 24, 60),
                    ink=(230, 230, 230), font_px=30, margin=30, line_px=60)


def photo(image: Image.Image, *, degrees: float = 7, seed: int = 0) -> Image.Image:
    """`image` pasted, rotated, onto a seeded noisy background and saved as JPEG quality 80."""
    return photo_of(image, degrees=degrees, background=noise((900, 700), seed=seed), fill=(128, 128, 128),
                    at=(100, 120), jpeg_quality=80)


def qr(payload: str, *, scale: int = 6) -> Image.Image:
    import zxingcpp

    code = zxingcpp.create_barcode(payload, zxingcpp.BarcodeFormat.QRCode)
    grey = Image.fromarray(np.asarray(code.to_image(scale=scale)))
    canvas = Image.new("RGB", (grey.width + 80, grey.height + 80), "white")
    canvas.paste(grey.convert("RGB"), (40, 40))
    return canvas


@pytest.fixture(scope="module")
def encoder():
    return load_vision_encoder(caption_model=None, backbone=None, placement=CPU, offline=True)


@pytest.fixture(scope="module")
def slots():
    return load_domain().slots


def test_receipt_ocr_keeps_ids_and_feeds_slot_extraction(encoder, slots):
    reading = encoder.predict_batch([receipt()])[0]
    assert isinstance(reading, ImageReading)
    assert "Order No: A7Q-4412" in reading.ocr_text and "Total: $37.50" in reading.ocr_text
    assert reading.ocr_text.splitlines()[0] == "ACME Store"  # top-to-bottom, spacing restored
    assert reading.ocr_confidence > 0.9
    found = extract_slots(reading.ocr_text, slots)
    assert found["order_id"].value == "A7Q-4412"
    assert found["amount"].value == "$37.50"
    assert reading.labels[0] == "document" and "light" in reading.labels and "colour:white" in reading.labels
    assert reading.caption == "a document with text"
    assert reading.features is None and "face" not in reading.labels


def test_light_on_dark_screen(encoder):
    reading = encoder.predict_batch([error_screen()])[0]
    lines = reading.ocr_text.splitlines()
    assert lines == ["Error 0x80070005", "Order KX-90817"]
    assert {"screen", "dark", "colour:blue"} <= set(reading.labels)
    assert reading.caption == "a dark screen with text"


def test_rotated_jpeg_photo_of_receipt(encoder, slots):
    reading = encoder.predict_batch([photo(receipt())])[0]
    assert "A7Q-4412" in reading.ocr_text.replace(" ", "")
    assert extract_slots(reading.ocr_text, slots)["order_id"].value == "A7Q-4412"
    assert "photo" in reading.labels


def test_rotated_jpeg_photo_of_dark_screen(encoder):
    reading = encoder.predict_batch([photo(error_screen(), degrees=-7, seed=1)])[0]
    assert "KX-90817" in reading.ocr_text.replace(" ", "")


def test_batch_keeps_order_and_blank_image_reads_nothing(encoder):
    blank = Image.new("RGB", (300, 200), "white")
    readings = encoder.predict_batch([blank, receipt()])
    assert readings[0].ocr_text == "" and readings[0].ocr_confidence == 0.0
    assert readings[0].caption == "a graphic" and "text" not in readings[0].labels
    assert "A7Q-4412" in readings[1].ocr_text
    assert all(r.seconds > 0 for r in readings)
    assert encoder.predict_batch([]) == []


def test_qr_code_payload_is_read(encoder):
    reading = encoder.predict_batch([qr("ORDER:KX-90817")])[0]
    assert reading.barcodes == ["ORDER:KX-90817"]
    assert "barcode" in reading.labels and "a barcode" in reading.caption


def test_qr_on_rotated_photo(encoder):
    reading = encoder.predict_batch([photo(qr("ORDER:KX-90817", scale=5))])[0]
    assert reading.barcodes == ["ORDER:KX-90817"]


def test_drawn_image_without_face_has_no_face_label(encoder):
    # a smiley is not a face photo: neither the cascade nor the eye check should fire
    image = Image.new("RGB", (400, 400), (200, 180, 160))
    draw = ImageDraw.Draw(image)
    draw.ellipse((100, 80, 300, 320), fill=(230, 200, 170), outline="black", width=3)
    draw.ellipse((150, 150, 180, 180), fill="black")
    draw.ellipse((220, 150, 250, 180), fill="black")
    draw.arc((150, 200, 250, 280), 20, 160, fill="black", width=4)
    reading = encoder.predict_batch([image])[0]
    assert "face" not in reading.labels
    assert not any(label.startswith("emotion:") for label in reading.labels)


def test_real_photo_without_face_has_no_face_label(encoder):
    """sklearn's flower photo made the bare Haar cascade report two happy faces."""
    import sklearn.datasets

    sklearn_images = sklearn.datasets.__path__[0]
    flower = Image.open(Path(sklearn_images) / "images" / "flower.jpg")
    reading = encoder.predict_batch([flower])[0]
    assert "face" not in reading.labels and reading.labels[0] == "photo"


def test_emotion_model_returns_a_distribution():
    reader = FaceReader.load()
    rng = np.random.default_rng(0)
    faces = np.stack([np.full((64, 64), 128, np.uint8), rng.integers(0, 255, (64, 64), dtype=np.uint8)])
    probs = reader.classify(faces)
    assert probs.shape == (2, len(EMOTIONS)) and len(EMOTIONS) == 7
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)
    assert (probs >= 0).all()
    assert not np.allclose(probs[0], probs[1])  # the input matters


def test_tiny_captioner_and_backbone(tmp_path):
    encoder = load_vision_encoder(
        caption_model=str(tiny_captioner(tmp_path / "cap")), backbone=str(tiny_vit(tmp_path / "vit")),
        placement=CPU, offline=True,
    )
    readings = encoder.predict_batch([receipt(), qr("X-123")])
    assert len(readings) == 2
    for reading in readings:
        assert isinstance(reading.caption, str)
        assert reading.features.shape == (17, 32)  # (P, D): 16 patches + CLS, hidden 32
        assert reading.features.dtype == np.float32
    assert "A7Q-4412" in readings[0].ocr_text  # OCR still runs beside the models
    assert not np.allclose(readings[0].features, readings[1].features)


def test_patch_features_need_no_weights():
    """backbone="patches": (64, 192) pixel patches in [-1, 1], row-major, the colour where it was drawn."""
    encoder = load_vision_encoder(caption_model=None, backbone="patches", placement=CPU, offline=True)
    assert encoder.feature_dim == 192
    image = Image.new("RGB", (200, 100), "white")
    ImageDraw.Draw(image).rectangle((0, 0, 99, 49), fill=(255, 0, 0))  # top-left quarter red
    reading, blank = encoder.predict_batch([image, Image.new("RGB", (50, 50), "white")])
    features = reading.features.reshape(8, 8, 8, 8, 3)  # (grid row, grid col, y, x, rgb)
    assert reading.features.shape == (64, 192) and reading.features.min() >= -1 and reading.features.max() <= 1
    np.testing.assert_allclose(features[1, 1, 4, 4], [1, -1, -1], atol=0.02)  # inside the red quarter
    np.testing.assert_allclose(features[6, 6, 4, 4], [1, 1, 1], atol=0.02)  # white elsewhere
    np.testing.assert_allclose(blank.features, 1.0, atol=0.02)
    assert load_vision_encoder(caption_model=None, backbone=None, placement=CPU, offline=True).feature_dim is None


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="cannot load vision backbone"):
        load_vision_encoder(caption_model=None, backbone=str(tmp_path / "nothing-here"), placement=CPU, offline=True)


def test_a_long_thin_banner_is_read_without_error(encoder):
    banner = document(["Order KX-90817"], size=(6000, 60))
    reading = encoder.predict_batch([banner])[0]
    assert isinstance(reading.ocr_text, str) and reading.labels
