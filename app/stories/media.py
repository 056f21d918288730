"""Media of a story turn as bytes: image files read, image specs drawn with Pillow, speech from espeak-ng.

Rendered once per spec and process (`MediaCache`), so a spec shared by several stories costs one render.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from app.stories.format import AudioSpec, ImageSpec

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian fonts-dejavu-core
FONT_PX = 30
LINE_PX = 52  # line pitch: FONT_PX plus room for descenders and OCR's line separation
MARGIN_PX = 36
JPEG_QUALITY = 85  # what a phone camera app saves
TABLE_PX = 120  # border of table around a photographed document, per side

LIGHT = ((255, 255, 255), (20, 20, 20))  # (background, ink)
DARK = ((32, 33, 36), (235, 235, 235))
# A first line that names the document, as the real thing has (unless the story's lines already do).
HEADERS = {"receipt": "RECEIPT", "shipping_label": "SHIP TO", "error_screen": None, "document": None}


class MediaCache:
    """Bytes of each image and audio spec, made on first use."""

    def __init__(self) -> None:
        self._made: dict[ImageSpec | AudioSpec, tuple[str, bytes]] = {}

    def image(self, spec: ImageSpec) -> tuple[str, bytes]:
        """(file name, bytes) of the image."""
        if spec not in self._made:
            self._made[spec] = _read(spec.file) if spec.file else (f"photo.{spec.format}", render_image(spec))
        return self._made[spec]

    def audio(self, spec: AudioSpec) -> tuple[str, bytes]:
        """(file name, bytes) of the clip."""
        if spec not in self._made:
            self._made[spec] = _read(spec.file) if spec.file else ("speech.wav", synthesize(spec))
        return self._made[spec]


def render_image(spec: ImageSpec) -> bytes:
    """A photo of a document: the lines drawn on paper (or a dark screen), turned by `spec.rotate` degrees
    and laid on a blurred table; PNG or JPEG bytes."""
    font = ImageFont.truetype(str(FONT), FONT_PX)
    header = HEADERS[spec.kind]
    lines = ([header] if header and not any(header in line.upper() for line in spec.lines) else []) + list(spec.lines)
    width = max(int(font.getlength(line)) for line in lines) + 2 * MARGIN_PX
    height = len(lines) * LINE_PX + 2 * MARGIN_PX
    background, ink = DARK if spec.dark else LIGHT
    page = Image.new("RGB", (max(width, 360), height), background)
    draw = ImageDraw.Draw(page)
    for row, line in enumerate(lines):
        draw.text((MARGIN_PX, MARGIN_PX + row * LINE_PX), line, font=font, fill=ink)
    if spec.kind == "shipping_label":  # a label has a thick frame around it
        draw.rectangle((4, 4, page.width - 5, page.height - 5), outline=ink, width=4)
    tilted = page.rotate(spec.rotate, expand=True, fillcolor=(128, 100, 70), resample=Image.Resampling.BICUBIC)
    size = (tilted.height + 2 * TABLE_PX, tilted.width + 2 * TABLE_PX)  # (H, W)
    grain = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)  # (H, W, 3): same photo each run
    table = Image.fromarray(grain)
    photo = Image.blend(table, Image.new("RGB", table.size, (120, 90, 60)), 0.6).filter(ImageFilter.GaussianBlur(2))
    photo.paste(tilted, (TABLE_PX, TABLE_PX))
    buffer = io.BytesIO()
    if spec.format == "jpeg":
        photo.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    else:
        photo.save(buffer, format="PNG")
    return buffer.getvalue()


def synthesize(spec: AudioSpec) -> bytes:
    """WAV bytes (22.05 kHz mono 16-bit) of espeak-ng saying `spec.say` in `spec.voice` at `spec.speed` wpm."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng): it speaks the audio turns")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        # The text goes on stdin: a story line starting with "-" must not read as an option.
        done = subprocess.run(["espeak-ng", "-v", spec.voice, "-s", str(spec.speed), "-w", str(out), "--stdin"],
                              input=spec.say.encode(), capture_output=True, timeout=60)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"espeak-ng failed for voice {spec.voice!r}: {done.stderr.decode(errors='replace')[:200]}")
        return out.read_bytes()


def _read(path: Path) -> tuple[str, bytes]:
    return path.name, path.read_bytes()
