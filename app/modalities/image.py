"""Photos: decoded to upright RGB, read by the vision encoder (OCR, barcodes, caption, labels)."""

from __future__ import annotations

from typing import Any

from PIL.Image import Image

from app.config import Settings
from app.dialogue.tracker import Evidence
from app.media.image import decode_image
from app.modalities.registry import BatchFunction, Modality
from models.vision import ImageReading


def _decode(data: bytes, settings: Settings) -> Image:
    return decode_image(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)


def _batch(vision: Any, wants_features: bool) -> BatchFunction:
    return vision.predict_batch  # features come with the backbone, whatever the decoder wants


def _evidence(reading: ImageReading) -> list[Evidence]:
    """The printed text, then each barcode's payload (an order number on a label)."""
    found = [Evidence(reading.ocr_text, "image", reading.ocr_confidence)] if reading.ocr_text else []
    return found + [Evidence(code, "image") for code in reading.barcodes]


def _summary(reading: ImageReading) -> dict[str, Any]:
    return {"caption": reading.caption, "ocr_text": reading.ocr_text or None, "labels": reading.labels,
            "barcodes": reading.barcodes}


IMAGE = Modality(
    name="image", plural="images", encoder="vision", single=False,
    max_items=lambda settings: settings.max_images, max_bytes=lambda settings: settings.max_image_bytes,
    decode=_decode, batch=_batch, evidence=_evidence, summary=_summary,
)
