"""Images of a turn: bytes (or base64 from a JSON body) in, an upright RGB PIL image out.

Nothing here imports a model. The pixel limit is checked from the header, before
any pixel is decoded, so a small file that declares a huge canvas costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import ParleyError

log = logging.getLogger(__name__)

# MPO is what phone cameras write for multi-picture JPEGs (portrait mode): read as its first JPEG.
ALLOWED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp",
                   "GIF": "image/gif"}
ALLOWED_LIST = "PNG, JPEG, WebP or GIF"
BACKGROUND = (255, 255, 255)  # transparent pixels are shown on white, as a browser would
# Text-like payloads (SVG, HTML, JSON) are a wrong type, not a broken image.
_TEXT_LIKE = re.compile(rb"^\s*(<|\{|\[)")
_REMOTE = re.compile(r"^\s*(https?|ftp|file)://", re.I)
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    """Encoded PNG/JPEG/WebP/GIF bytes -> RGB image, EXIF orientation applied (GIF: first frame)."""
    if not data:
        raise ParleyError("invalid", "empty_image", "the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ParleyError("too_large", "image_too_large", f"the image is {len(data)} bytes; the limit is {max_bytes}")
    image = _open_lazily(data)
    if image.format not in ALLOWED_FORMATS:
        raise ParleyError("unsupported_media", "unsupported_image_type",
                          f"{image.format} images are not accepted; send {ALLOWED_LIST}")
    width, height = image.size  # from the header: no pixels decoded yet
    if width * height > max_pixels:
        raise ParleyError("too_large", "image_too_many_pixels",
                          f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    try:
        image.seek(0)  # GIF / animated WebP / MPO: the first frame
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt pixel data
        raise ParleyError("invalid", "undecodable_image",
                          f"the {image.format} image is corrupt or truncated: {exc}") from exc
    return _to_rgb(_upright(image))


def _upright(image: Image.Image) -> Image.Image:
    """EXIF orientation applied; broken EXIF metadata leaves good pixels as they are."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - Pillow raises struct.error, KeyError, ValueError... on bad EXIF
        log.info("ignored unreadable EXIF orientation")
        return image


def _open_lazily(data: bytes) -> Image.Image:
    """Parse the header only. Pillow's own bomb check (2x its global limit) also ends up as image_too_many_pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ParleyError("too_large", "image_too_many_pixels", f"the image declares too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        if _TEXT_LIKE.match(data[:64]) or _is_text(data[:512]):
            raise ParleyError("unsupported_media", "unsupported_image_type",
                              f"this is text (SVG, HTML or similar), not an image; send {ALLOWED_LIST}") from exc
        raise ParleyError("invalid", "undecodable_image",
                          f"the bytes are not a recognisable image; send {ALLOWED_LIST}") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # a known format whose header is broken
        raise ParleyError("invalid", "undecodable_image", f"the image header is corrupt: {exc}") from exc


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\r\n" for ch in text)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


# What a data: URL may declare for each kind of inline media (no MIME type at all is fine too).
_INLINE_MIMES = {
    "image": (set(ALLOWED_FORMATS.values()), ALLOWED_LIST),
    "audio": ({"application/ogg", "application/octet-stream"}, "audio/* (WAV, FLAC, OGG/Vorbis or MP3)"),
}


def decode_data_url_or_base64(value: str, *, max_bytes: int, kind: str = "image") -> bytes:
    """`data:image/png;base64,...` or plain base64 (standard or URL-safe) -> bytes.

    `kind` ("image" or "audio") decides which data: URL MIME types pass and how errors are named
    (empty_image / empty_audio, image_too_large / audio_too_large, unsupported_*_type).
    Only inline data is accepted: the server never fetches a URL (no SSRF, no slow remotes).
    """
    allowed, allowed_list = _INLINE_MIMES[kind]
    if _REMOTE.match(value) or value.lstrip().startswith("//"):
        raise ParleyError("invalid", "remote_url_refused",
                          f"{kind} URLs are not fetched; send the {kind} inline as base64 or a data: URL")
    payload = value.strip()
    match = _DATA_URL.match(payload)
    if match:
        mime = (match["mime"] or "").lower()
        if mime and mime not in allowed and not (kind == "audio" and mime.startswith("audio/")):
            raise ParleyError("unsupported_media", f"unsupported_{kind}_type",
                              f"{mime} is not accepted as {kind}; send {allowed_list}")
        if not match["b64"]:
            raise ParleyError("invalid", "invalid_base64", "data: URLs must be base64-encoded (';base64,')")
        payload = payload[match.end() :]
    elif payload.lower().startswith("data:"):
        raise ParleyError("invalid", "invalid_base64", "malformed data: URL; expected data:<mime>;base64,<data>")
    payload = re.sub(r"\s+", "", payload)
    if not payload:
        raise ParleyError("invalid", f"empty_{kind}", f"the {kind} is empty")
    max_encoded = 4 * ((max_bytes + 2) // 3)  # base64 of max_bytes bytes, padding included
    if len(payload) > max_encoded:
        raise ParleyError("too_large", f"{kind}_too_large", f"the encoded {kind} is {len(payload)} characters; "
                          f"the limit is {max_encoded} ({max_bytes} bytes)")
    try:
        if "-" in payload or "_" in payload:
            payload = payload.replace("-", "+").replace("_", "/")
        data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ParleyError("invalid", "invalid_base64", f"the {kind} is not valid base64: {exc}") from exc
    if len(data) > max_bytes:
        raise ParleyError("too_large", f"{kind}_too_large",
                          f"the {kind} is {len(data)} bytes; the limit is {max_bytes}")
    return data
