"""Test media made in code: speech from espeak-ng, documents and photos drawn with Pillow."""

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # Debian fonts-dejavu-core (make install-test)


def speech_wav(text: str, *, voice: str = "en-us", words_per_minute: int = 150) -> bytes:
    """WAV bytes (22.05 kHz mono) of espeak-ng saying `text`."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed: run `make install-test`")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(out), text], check=True)
        return out.read_bytes()


def document(lines: list[str], *, dark: bool = False, size: tuple[int, int] = (720, 360)) -> Image.Image:
    """A receipt or screen: text lines, black on white (or white on dark grey)."""
    background, ink = ((32, 33, 36), (235, 235, 235)) if dark else ((255, 255, 255), (20, 20, 20))
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(FONT), 34)
    for row, line in enumerate(lines):
        draw.text((40, 40 + row * 60), line, font=font, fill=ink)
    return image


def photo_of(image: Image.Image, *, degrees: float = 7) -> Image.Image:
    """The document lying slightly rotated on a blurred, textured table."""
    table = Image.effect_noise((image.width + 240, image.height + 240), 40).convert("RGB")
    table = Image.blend(table, Image.new("RGB", table.size, (120, 90, 60)), 0.6).filter(ImageFilter.GaussianBlur(2))
    tilted = image.rotate(degrees, expand=True, fillcolor=(255, 255, 255))
    table.paste(tilted, ((table.width - tilted.width) // 2, (table.height - tilted.height) // 2))
    return table


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
