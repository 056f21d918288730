"""VisionEncoder: what an image shows, as facts a dialogue policy can use.

Default path, all from weights that ship in installed wheels:
  OCR       rapidocr-onnxruntime (PP-OCRv4 det + rec + 180° angle classifier, ONNX)
  barcodes  zxing-cpp
  faces     OpenCV Haar cascade + mini-XCEPTION emotions (models/faces.py)
  facts     dominant colours, dark/light, document/screen/photo (plain numpy)
Optional, from a HF id or a local folder: a captioning model and a vision backbone.
No captioning weights ship in any package, so the default caption is a short
sentence built from the facts above ("a document with text").
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL.Image
import torch

from models.faces import FaceReader
from models.registry import DEFAULT, Placement, resolve_source

# OCR
MIN_LINE_SCORE = 0.5  # rapidocr's own default: lines below are mostly noise
RETRY_BELOW_CONFIDENCE = 0.85  # a first pass below this mean line score also tries the inverted image
RETRY_BELOW_CHARS = 4  # ... and so does one that found (almost) no text
DARK_MEAN = 100  # mean luma (0..255) under which an image counts as dark: read it inverted first
# rapidocr's recogniser drops many spaces ("OrderKX-90817"). A blank pixel column run
# between two characters at least this share of the line box's height is a space.
# Measured on 5 DejaVu faces x 3 sizes: 0.31 restores 154/158 dropped spaces, 0 false splits.
SPACE_RUN = 0.31
NO_SPLIT_BEFORE = set("-./,:;)%")
NO_SPLIT_AFTER = set("-./($#@")

# Image facts
FACT_SIDE = 96  # colour statistics on a (96, 96) thumbnail
BACKGROUND_SHARE = 0.45  # one quantised colour covering this share = a flat (document/screen) background
COLOUR_SHARE = 0.15  # a named colour covering this share of pixels is reported
MAX_COLOURS = 3
# Captioning / backbone
CAPTION_MAX_TOKENS = 30
# The built-in "patches" featuriser (no weights): a 64 x 64 thumbnail cut into an 8 x 8 grid of 8 x 8 RGB
# patches. It carries colours and layout, not meaning; a ViT/CLIP/SigLIP backbone gives far richer features.
PATCHES = "patches"
PATCH_SIDE = 8  # pixels
PATCH_GRID = 8  # patches per side -> 64 patches
PATCH_DIM = PATCH_SIDE * PATCH_SIDE * 3  # 192 values per patch


@dataclass(frozen=True)
class ImageReading:
    ocr_text: str  # lines joined with "\n", reading order top-to-bottom
    ocr_confidence: float  # mean line score, 0..1 (0 when no text)
    caption: str | None  # model caption when configured, else built from the facts below
    labels: list[str]  # e.g. ["document", "barcode", "face", "emotion:happy", "colour:white", "light"]
    barcodes: list[str]  # decoded barcode / QR payloads
    seconds: float
    features: np.ndarray | None  # (P, D) backbone hidden states when a backbone is configured


@dataclass(frozen=True)
class _OcrResult:
    lines: list[tuple[str, float]]  # (text, score), top to bottom

    @property
    def weight(self) -> float:
        return sum(len(t.replace(" ", "")) * s for t, s in self.lines)

    @property
    def confidence(self) -> float:
        return float(np.mean([s for _, s in self.lines])) if self.lines else 0.0


MAX_ASPECT = 50  # rapidocr scales the long side to 2000 px and fails when the short side falls under 16 px


def _pad_to_aspect(grey: np.ndarray) -> np.ndarray:
    """(H, W) -> (H', W'): a banner-like strip padded with its own median grey, so OCR can resize it."""
    h, w = grey.shape
    short = max(h, w) // MAX_ASPECT
    if min(h, w) >= short:
        return grey
    fill = int(np.median(grey))
    pad_h, pad_w = max(0, short - h), max(0, short - w)
    return np.pad(grey, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)), constant_values=fill)


class VisionEncoder:
    feature_dim: int | None  # D of `ImageReading.features`, None without a backbone

    def __init__(self, ocr: Any, faces: FaceReader, *, captioner: _Captioner | None = None,
                 backbone: PatchFeatures | _Backbone | None = None) -> None:
        self.ocr, self.faces, self.captioner, self.backbone = ocr, faces, captioner, backbone
        self._lock = threading.Lock()  # rapidocr and tflite keep per-call state
        self.feature_dim = backbone.feature_dim if backbone else None

    def predict_batch(self, images: list[PIL.Image.Image]) -> list[ImageReading]:
        """RGB images -> one ImageReading each, same order."""
        with self._lock:
            started = time.perf_counter()
            readings = [self._read_one(image) for image in images]
            captions = self.captioner.predict_batch(images) if self.captioner and images else None
            features = self.backbone.predict_batch(images) if self.backbone and images else None
        # Model time is shared by the batch: spread it evenly.
        shared = (time.perf_counter() - started - sum(r["seconds"] for r in readings)) / max(1, len(images))
        return [
            ImageReading(
                ocr_text=r["text"], ocr_confidence=r["confidence"],
                caption=captions[i] if captions else r["caption"], labels=r["labels"],
                barcodes=r["barcodes"], seconds=round(r["seconds"] + shared, 4),
                features=features[i] if features is not None else None,
            )
            for i, r in enumerate(readings)
        ]

    def _read_one(self, image: PIL.Image.Image) -> dict[str, Any]:
        started = time.perf_counter()
        rgb = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # (H, W)
        dark = float(grey.mean()) < DARK_MEAN
        ocr = self._read_text(grey, dark=dark)
        text = "\n".join(t for t, _ in ocr.lines)
        barcodes = _read_barcodes(rgb)
        faces = self.faces.find(grey)
        kind, colours = _image_facts(rgb, has_text=bool(text), has_code=bool(barcodes), has_face=bool(faces))
        labels = [kind] + (["text"] if text else []) + (["barcode"] if barcodes else [])
        if faces:
            labels += ["face", f"emotion:{faces[0].emotion}"]
        labels += [f"colour:{c}" for c in colours] + ["dark" if dark else "light"]
        caption = _describe(kind, has_text=bool(text), n_codes=len(barcodes),
                            emotions=[f.emotion for f in faces], dark=dark)
        return {"text": text, "confidence": round(ocr.confidence, 4), "caption": caption, "labels": labels,
                "barcodes": barcodes, "seconds": time.perf_counter() - started}

    # --- OCR -----------------------------------------------------------------

    def _read_text(self, grey: np.ndarray, *, dark: bool) -> _OcrResult:
        """Dark images are read inverted first (the detector was trained on dark-on-light text);
        a weak first pass is retried on the other polarity and the better reading kept."""
        first = self._ocr_pass(255 - grey if dark else grey)
        weak = sum(len(t) for t, _ in first.lines) < RETRY_BELOW_CHARS or first.confidence < RETRY_BELOW_CONFIDENCE
        if not weak:
            return first
        second = self._ocr_pass(grey if dark else 255 - grey)
        return max(first, second, key=lambda r: r.weight)

    def _ocr_pass(self, grey: np.ndarray) -> _OcrResult:
        grey = _pad_to_aspect(grey)
        bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)  # (H, W, 3): rapidocr takes arrays as BGR
        rows, _ = self.ocr(bgr, return_word_box=True, text_score=MIN_LINE_SCORE, box_thresh=0.5, unclip_ratio=1.6)
        lines = []
        for box, text, score, char_boxes, chars, _scores in rows or []:
            text = _restore_spaces(grey, np.asarray(box, np.float32), chars, char_boxes) if chars else text
            text = re.sub(r"\s+", " ", text.replace("，", ",")).strip()  # the recogniser also knows CJK commas
            if text:
                lines.append((text, float(score)))
        return _OcrResult(lines)


def _restore_spaces(grey: np.ndarray, quad: np.ndarray, chars: list[str], char_boxes: list) -> str:
    """Insert the spaces rapidocr dropped, from blank pixel columns between character centres."""
    assert quad.shape == (4, 2), quad.shape
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[3] - quad[2])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    if width < 2 or height < 2 or len(chars) != len(char_boxes):
        return "".join(chars)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    crop = cv2.warpPerspective(grey, cv2.getPerspectiveTransform(quad, target), (width, height),
                               borderMode=cv2.BORDER_REPLICATE)  # (h, w): the line, straightened
    _, binary = cv2.threshold(crop, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary == 0 if (binary == 0).mean() < 0.5 else binary == 255  # text is the minority
    blank = ink.sum(axis=0) <= max(1, 0.03 * height)  # (w,) True where a column has no ink
    along = (quad[1] - quad[0]) / np.linalg.norm(quad[1] - quad[0])
    centres = [float(np.dot(np.mean(np.asarray(b, np.float32), axis=0) - quad[0], along)) for b in char_boxes]
    out = [chars[0]]
    for i in range(1, len(chars)):
        a, b = chars[i - 1], chars[i]
        if " " not in (a, b) and not _no_split(out, b):
            lo, hi = int(max(0, centres[i - 1])), int(min(width, centres[i]))
            if _longest_run(blank[lo:hi]) >= SPACE_RUN * height:
                out.append(" ")
        out.append(b)
    return "".join(out)


def _no_split(before: list[str], b: str) -> bool:
    """Never split ids, numbers and prices: "A7Q-4412", "12:30", "$37.50", "0x80070005"."""
    a = before[-1]
    if a in NO_SPLIT_AFTER or b in NO_SPLIT_BEFORE:
        return True
    prev = next((c for c in reversed(before) if c not in ":,."), "")
    return b.isdigit() and (a.isdigit() or (a in ":," and prev.isdigit()))


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for value in mask:
        run = run + 1 if value else 0
        best = max(best, run)
    return best


# --- barcodes and image facts ----------------------------------------------------


def _read_barcodes(rgb: np.ndarray) -> list[str]:
    import zxingcpp

    seen: list[str] = []
    for code in zxingcpp.read_barcodes(rgb):
        if code.valid and code.text and code.text not in seen:
            seen.append(code.text)
    return seen


# (name, hue range in OpenCV degrees 0..180); saturation/value rules come first
_HUES = (("red", 0, 8), ("orange", 8, 20), ("yellow", 20, 35), ("green", 35, 85), ("blue", 85, 130),
         ("purple", 130, 150), ("pink", 150, 170), ("red", 170, 181))


def _colour_names(rgb_small: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) colour names."""
    hsv = cv2.cvtColor(rgb_small[None], cv2.COLOR_RGB2HSV)[0].astype(np.int32)  # (N, 3)
    h, s, v = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    names = np.full(len(hsv), "grey", dtype=object)
    for name, lo, hi in _HUES:
        names[(h >= lo) & (h < hi)] = name
    names[(names == "orange") & (v < 150)] = "brown"
    names[s < 40] = "grey"
    names[(s < 40) & (v > 215)] = "white"
    names[v < 50] = "black"
    return names


def _image_facts(rgb: np.ndarray, *, has_text: bool, has_code: bool, has_face: bool) -> tuple[str, list[str]]:
    """-> (kind, dominant colour names). kind: document | screen | graphic | photo."""
    small = cv2.resize(rgb, (FACT_SIDE, FACT_SIDE), interpolation=cv2.INTER_AREA).reshape(-1, 3)  # (N, 3)
    names = _colour_names(small)
    values, counts = np.unique(names, return_counts=True)
    order = np.argsort(-counts)
    colours = [str(values[i]) for i in order[:MAX_COLOURS] if counts[i] / len(names) >= COLOUR_SHARE]
    quantised = (small // 32).astype(np.int32) @ np.array([64, 8, 1])  # (N,) 8 levels per channel
    flat = np.bincount(quantised).max() / len(quantised) >= BACKGROUND_SHARE
    if flat and not has_face and (has_text or has_code):
        light = float(small.mean()) >= DARK_MEAN
        return ("document" if light else "screen"), colours
    return ("graphic" if flat and not has_face else "photo"), colours


def _describe(kind: str, *, has_text: bool, n_codes: int, emotions: list[str], dark: bool) -> str:
    """A one-line description from the facts: "a document with text and a QR/barcode"."""
    noun = {"screen": "dark screen", "photo": "dark photo" if dark else "photo"}.get(kind, kind)
    parts = ["text"] if has_text else []
    if n_codes:
        parts.append("a barcode" if n_codes == 1 else f"{n_codes} barcodes")
    if emotions:
        face = "a face" if len(emotions) == 1 else f"{len(emotions)} faces"
        parts.append(f"{face} ({emotions[0]})")
    return f"a {noun}" + (" with " + " and ".join(parts) if parts else "")


# --- optional transformers models ----------------------------------------------------


class _Captioner:
    def __init__(self, model: Any, processor: Any, tokenizer: Any, *, placement: Placement) -> None:
        self.model, self.processor, self.tokenizer, self.placement = model, processor, tokenizer, placement

    @torch.inference_mode()
    def predict_batch(self, images: list[PIL.Image.Image]) -> list[str]:
        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        inputs = {k: v.to(self.placement.device, self.placement.dtype if v.is_floating_point() else v.dtype)
                  for k, v in inputs.items()}  # pixel_values (N, 3, H, W)
        tokens = self.model.generate(**inputs, max_new_tokens=CAPTION_MAX_TOKENS, do_sample=False)  # (N, T)
        return [t.strip() for t in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]


class PatchFeatures:
    """Image features without weights: (P, D) = (64, 192) pixel patches scaled to [-1, 1], row by row."""

    feature_dim = PATCH_DIM

    def predict_batch(self, images: list[PIL.Image.Image]) -> list[np.ndarray]:
        side = PATCH_SIDE * PATCH_GRID
        out = []
        for image in images:
            resized = image.convert("RGB").resize((side, side), PIL.Image.Resampling.BILINEAR)
            pixels = np.asarray(resized, np.float32)  # (64, 64, 3)
            grid = pixels.reshape(PATCH_GRID, PATCH_SIDE, PATCH_GRID, PATCH_SIDE, 3).transpose(0, 2, 1, 3, 4)
            out.append(grid.reshape(PATCH_GRID * PATCH_GRID, PATCH_DIM) / 127.5 - 1.0)  # (64, 192)
        return out


class _Backbone:
    def __init__(self, model: Any, processor: Any, *, placement: Placement) -> None:
        self.model, self.processor, self.placement = model, processor, placement
        self.feature_dim = int(model.config.hidden_size)

    @torch.inference_mode()
    def predict_batch(self, images: list[PIL.Image.Image]) -> list[np.ndarray]:
        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.placement.device, self.placement.dtype)  # (N, 3, H, W)
        hidden = self.model(pixel_values=pixels).last_hidden_state  # (N, P, D)
        return list(hidden.float().cpu().numpy())


def _load_captioner(source: str, *, placement: Placement, offline: bool) -> _Captioner:
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, \
        AutoTokenizer, VisionEncoderDecoderModel

    model: Any  # one of two model classes, used through what they share
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=offline)
        if config.model_type == "vision-encoder-decoder":  # ViT-GPT2 style: image processor + tokenizer
            model = VisionEncoderDecoderModel.from_pretrained(source, dtype=placement.dtype, local_files_only=offline)
            processor = AutoImageProcessor.from_pretrained(source, local_files_only=offline)
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
        else:  # BLIP, GIT, Florence, ...: one processor carries both
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=placement.dtype, local_files_only=offline)
            processor = AutoProcessor.from_pretrained(source, local_files_only=offline)
            tokenizer = processor.tokenizer
    except OSError as exc:
        raise RuntimeError(f"cannot load captioning model {source!r}{_offline_hint(offline)}: {exc}") from exc
    return _Captioner(model.to(placement.device).eval(), processor, tokenizer, placement=placement)


def load_image_featuriser(name: str, *, placement: Placement, offline: bool) -> PatchFeatures | _Backbone:
    """"patches" -> the built-in pixel-patch featuriser; else a ViT/CLIP/SigLIP HF id or folder.
    Either has `feature_dim` and `predict_batch(images) -> list of (P, D) arrays`."""
    if name == PATCHES:
        return PatchFeatures()
    return _load_backbone(resolve_source(name, default=lambda: Path(name)), placement=placement, offline=offline)


def _load_backbone(source: str, *, placement: Placement, offline: bool) -> _Backbone:
    from transformers import AutoImageProcessor, AutoModel

    try:
        model = AutoModel.from_pretrained(source, dtype=placement.dtype, local_files_only=offline)
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=offline)
    except OSError as exc:
        raise RuntimeError(f"cannot load vision backbone {source!r}{_offline_hint(offline)}: {exc}") from exc
    model = getattr(model, "vision_model", model)  # CLIP / SigLIP: keep the image tower only
    return _Backbone(model.to(placement.device).eval(), processor, placement=placement)


def _offline_hint(offline: bool) -> str:
    return " (offline: hub ids must already be in the local HF cache)" if offline else ""


def _load_ocr(placement: Placement) -> Any:
    import onnxruntime
    from rapidocr_onnxruntime import RapidOCR

    cuda = placement.device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return RapidOCR(det_use_cuda=cuda, cls_use_cuda=cuda, rec_use_cuda=cuda)


def load_vision_encoder(*, caption_model: str | None, backbone: str | None, placement: Placement,
                        offline: bool) -> VisionEncoder:
    """caption_model: None or "default" (none ship in any package), a HF id or a folder.
    backbone: None / "default" (no image features), "patches" (built-in, see PatchFeatures), a HF id or a folder."""

    def source(name: str | None) -> str | None:
        return None if not name or name == DEFAULT else resolve_source(name, default=lambda: Path(name))

    caption_src = source(caption_model)
    return VisionEncoder(
        _load_ocr(placement), FaceReader.load(),
        captioner=_load_captioner(caption_src, placement=placement, offline=offline) if caption_src else None,
        backbone=load_image_featuriser(backbone, placement=placement, offline=offline)
        if backbone and backbone != DEFAULT else None,
    )
