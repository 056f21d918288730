"""Test media made in code: speech from espeak-ng, documents and photos drawn with Pillow."""

import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from app.media.audio import decode_audio

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian fonts-dejavu-core (make install-test)

Colour = str | tuple[int, int, int]


def speech_wav(text: str, *, voice: str | None = "en-us", words_per_minute: int | None = 150,
               pitch: int | None = None) -> bytes:
    """WAV bytes (22.05 kHz mono 16-bit) of espeak-ng saying `text`.

    `voice=None` / `words_per_minute=None` / `pitch=None` leave espeak-ng's own default (voice "en",
    175 wpm, pitch 50 of 0..99)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: run `make install-test`")
    options = []
    if voice:
        options += ["-v", voice]
    if words_per_minute:
        options += ["-s", str(words_per_minute)]
    if pitch is not None:
        options += ["-p", str(pitch)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", *options, "-w", str(out), text], check=True, capture_output=True, timeout=30)
        return out.read_bytes()


# Words the recogniser may write for a spoken digit.
DIGIT_HOMOPHONES = {"for": "4", "four": "4", "to": "2", "too": "2", "two": "2", "one": "1", "five": "5"}


def heard(speech_encoder, wav: bytes) -> str:
    """What a speech encoder hears in `wav`, lowercased words; digits of a spelled-out id joined back
    ("for 5 1 2" / "4-5-1-2" -> "4512")."""
    clip = decode_audio(wav, max_seconds=60.0, max_bytes=10_000_000, sample_rate=16_000)
    words = re.sub(r"[^a-z0-9 ]", " ", speech_encoder.predict_batch([clip])[0].text.lower()).split()
    return re.sub(r"(?<=\d) (?=\d)", "", " ".join(DIGIT_HOMOPHONES.get(word, word) for word in words))


def document(
    lines: list[str], *, dark: bool = False, size: tuple[int, int] = (720, 360),
    background: Colour | None = None, ink: Colour | None = None,
    font_px: int = 34, margin: int = 40, line_px: int = 60,
) -> Image.Image:
    """A receipt or screen: text lines, black on white (or white on dark grey); `background`/`ink` override."""
    default_background, default_ink = ((32, 33, 36), (235, 235, 235)) if dark else ((255, 255, 255), (20, 20, 20))
    image = Image.new("RGB", size, default_background if background is None else background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), font_px)
    for row, line in enumerate(lines):
        draw.text((margin, margin + row * line_px), line, font=font, fill=default_ink if ink is None else ink)
    return image


def noise(size: tuple[int, int], *, seed: int = 0) -> Image.Image:
    """Uniform RGB noise, `size` = (width, height), reproducible from `seed`."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def photo_of(
    image: Image.Image, *, degrees: float = 7, background: Image.Image | None = None,
    fill: Colour = (255, 255, 255), at: tuple[int, int] | None = None, jpeg_quality: int | None = None,
) -> Image.Image:
    """`image` rotated by `degrees` (corners `fill`) and pasted onto `background` at `at` (default: centred).

    The default background is a blurred, textured table 240 px larger than `image`; with `jpeg_quality`
    the photo comes back through a JPEG round trip, as a camera would deliver it."""
    if background is None:
        table = Image.effect_noise((image.width + 240, image.height + 240), 40).convert("RGB")
        background = Image.blend(table, Image.new("RGB", table.size, (120, 90, 60)), 0.6).filter(ImageFilter.GaussianBlur(2))
    else:
        background = background.copy()
    tilted = image.rotate(degrees, expand=True, fillcolor=fill)
    if at is None:
        at = ((background.width - tilted.width) // 2, (background.height - tilted.height) // 2)
    background.paste(tilted, at)
    if jpeg_quality is not None:
        return Image.open(io.BytesIO(encoded(background, "JPEG", quality=jpeg_quality))).convert("RGB")
    return background


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
