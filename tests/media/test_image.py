"""decode_image and decode_data_url_or_base64: every accepted format and every refusal."""

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.errors import ParleyError
from app.media.image import decode_data_url_or_base64, decode_image
from tests.samples import encoded

MAX_BYTES = 5_000_000
MAX_PIXELS = 20_000_000


def sample(size=(60, 40)) -> Image.Image:
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 2] = (255, 0, 0)  # left half red, right half black
    return Image.fromarray(pixels)


def decode(data: bytes, **limits) -> Image.Image:
    return decode_image(data, max_bytes=limits.get("max_bytes", MAX_BYTES), max_pixels=limits.get("max_pixels", MAX_PIXELS))


def refusal(call) -> ParleyError:
    with pytest.raises(ParleyError) as info:
        call()
    return info.value


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_each_format_decodes_to_rgb(fmt):
    image = decode(encoded(sample(), fmt))
    assert image.mode == "RGB" and image.size == (60, 40)
    red = image.getpixel((5, 20))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert max(image.getpixel((55, 20))) < 60


def test_gif_first_frame():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "blue")]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    r, g, b = decode(data).getpixel((10, 10))
    assert r > 200 and b < 60


def test_transparent_png_is_shown_on_white():
    image = decode(encoded(Image.new("RGBA", (10, 10), (0, 0, 0, 0)), "PNG"))
    assert image.getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    data = encoded(sample((60, 40)), "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).size == (60, 40)
    assert decode(data).size == (40, 60)


def test_empty():
    err = refusal(lambda: decode(b""))
    assert (err.kind, err.code) == ("invalid", "empty_image")


def test_over_max_bytes():
    data = encoded(sample(), "PNG")
    err = refusal(lambda: decode(data, max_bytes=len(data) - 1))
    assert (err.kind, err.code) == ("too_large", "image_too_large")
    assert decode(data, max_bytes=len(data)).size == (60, 40)


def test_random_bytes_are_undecodable():
    data = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    err = refusal(lambda: decode(data))
    assert (err.kind, err.code) == ("invalid", "undecodable_image")


def test_truncated_png_is_undecodable():
    data = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)), "PNG")
    err = refusal(lambda: decode(data[: len(data) // 2]))
    assert (err.kind, err.code) == ("invalid", "undecodable_image")


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares width x height (1-bit grey); its pixel data is never read."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [30_000, 5_000])  # beyond Pillow's own bomb limit, and only beyond ours
def test_decompression_bomb_refused_from_header(side):
    data = png_declaring(side, side)
    assert len(data) < 100
    err = refusal(lambda: decode(data))
    assert (err.kind, err.code) == ("too_large", "image_too_many_pixels")


def test_pixel_limit_is_inclusive():
    assert decode(encoded(sample((50, 40)), "PNG"), max_pixels=2000).size == (50, 40)
    err = refusal(lambda: decode(encoded(sample((50, 40)), "PNG"), max_pixels=1999))
    assert err.code == "image_too_many_pixels"


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO"])
def test_other_formats_are_unsupported(fmt):
    err = refusal(lambda: decode(encoded(sample((32, 32)), fmt)))
    assert (err.kind, err.code) == ("unsupported_media", "unsupported_image_type")
    assert fmt in err.message


@pytest.mark.parametrize("text", [b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>', b"just some words\n"])
def test_svg_and_text_are_unsupported(text):
    err = refusal(lambda: decode(text))
    assert (err.kind, err.code) == ("unsupported_media", "unsupported_image_type")


# --- data URLs / base64 ---------------------------------------------------------------

PNG = encoded(sample(), "PNG")


def test_plain_base64_and_data_url():
    plain = base64.b64encode(PNG).decode()
    assert decode_data_url_or_base64(plain, max_bytes=MAX_BYTES) == PNG
    assert decode_data_url_or_base64(f"data:image/png;base64,{plain}", max_bytes=MAX_BYTES) == PNG
    wrapped = "\n".join(plain[i : i + 76] for i in range(0, len(plain), 76))  # MIME line breaks
    assert decode_data_url_or_base64(wrapped, max_bytes=MAX_BYTES) == PNG
    urlsafe = base64.urlsafe_b64encode(PNG).decode().rstrip("=")
    assert decode_data_url_or_base64(urlsafe, max_bytes=MAX_BYTES) == PNG


def test_bad_base64():
    err = refusal(lambda: decode_data_url_or_base64("data:image/png;base64,@@not*base64!!", max_bytes=MAX_BYTES))
    assert (err.kind, err.code) == ("invalid", "invalid_base64")
    err = refusal(lambda: decode_data_url_or_base64("data:image/png,rawbytes", max_bytes=MAX_BYTES))
    assert err.code == "invalid_base64"


@pytest.mark.parametrize("url", ["http://example.com/a.png", "HTTPS://example.com/a.png", "file:///etc/passwd"])
def test_urls_are_refused(url):
    err = refusal(lambda: decode_data_url_or_base64(url, max_bytes=MAX_BYTES))
    assert (err.kind, err.code) == ("invalid", "remote_url_refused")
    assert "inline" in err.message


def test_encoded_length_checked_before_decoding():
    plain = base64.b64encode(PNG).decode()
    err = refusal(lambda: decode_data_url_or_base64(plain, max_bytes=len(PNG) - 10))
    assert (err.kind, err.code) == ("too_large", "image_too_large")
    huge_invalid = "!" * 10_000  # refused for size without being decoded
    assert refusal(lambda: decode_data_url_or_base64(huge_invalid, max_bytes=100)).code == "image_too_large"


def test_non_image_data_url_is_unsupported():
    payload = base64.b64encode(b"hello").decode()
    err = refusal(lambda: decode_data_url_or_base64(f"data:text/plain;base64,{payload}", max_bytes=MAX_BYTES))
    assert (err.kind, err.code) == ("unsupported_media", "unsupported_image_type")


def test_empty_base64():
    assert refusal(lambda: decode_data_url_or_base64("  ", max_bytes=MAX_BYTES)).code == "empty_image"


def test_phone_camera_mpo_is_read_as_its_first_jpeg():
    first, second = sample(), sample((30, 20))
    buffer = io.BytesIO()
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    image = decode(buffer.getvalue())
    assert image.size == first.size and image.mode == "RGB"


def test_broken_exif_keeps_the_pixels():
    png = bytearray(encoded(sample(), "PNG"))
    # An eXIf chunk holding a TIFF header cut short: Pillow's EXIF parser raises struct.error on it.
    payload = bytes.fromhex("4578696600004d4d002a")[6:]
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + payload) & 0xFFFFFFFF)
    at = png.index(b"IDAT") - 4
    image = decode(bytes(png[:at]) + chunk + bytes(png[at:]))
    assert image.size == sample().size
