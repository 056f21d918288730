"""Hostile input, all in one table: each is a clear 4xx JSON error, no session changes, memory stays bounded.

The table takes in the bad-input tables of test_bad_input.py and test_media_turns.py (imported, not copied)
and adds the hostile cases: bombs, lying headers, huge and deep bodies, smuggled URLs, path-like and
look-alike session ids, ambiguous JSON.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import resource
import struct
import wave
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from tests.api.test_bad_input import BAD_TURNS
from tests.api.test_media_turns import BAD_MEDIA

# The error code of each case of test_media_turns.BAD_MEDIA (that table asserts only the status).
MEDIA_CODES = {
    "corrupt image": "undecodable_image",
    "truncated png": "undecodable_image",
    "too many pixels": "image_too_many_pixels",
    "bmp": "unsupported_image_type",
    "too many images": "too_many_images",
    "remote url": "remote_url_refused",
    "bad base64": "invalid_base64",
    "text as audio": "undecodable_audio",
    "image as audio": "undecodable_audio",
    "empty audio file": "empty_audio",
    "two audio clips": "invalid_request",
    "image as a plain field": "invalid_request",
}

SID = "{sid}"  # replaced by the snapshot session's id


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A ~100-byte PNG whose header declares width x height 1-bit pixels (10 gigapixels): a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024, 9)  # a few rows; nobody should ever get to the rest
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")


def wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    """A real 16-bit mono WAV: a 440 Hz tone."""
    frames = int(seconds * rate)
    samples = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples)
    return buffer.getvalue()


def wav_claiming(seconds: float, rate: int = 16_000, present: int = 3200) -> bytes:
    """A WAV whose RIFF and data sizes claim `seconds` of 16-bit mono audio; only `present` bytes follow."""
    data_size = int(seconds * rate) * 2
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + data_size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", data_size) + b"\x00" * present)


def raw_json(text: str | bytes) -> dict[str, Any]:
    return {"content": text.encode() if isinstance(text, str) else text, "headers": {"content-type": "application/json"}}


async def streamed_100mb():
    """100 MB as a chunked body (no Content-Length), made lazily: the test never holds more than one chunk."""
    chunk = b"x" * 1_000_000
    for _ in range(100):
        yield chunk


def fullwidth(sid: str) -> str:
    return sid.translate({ord(d): ord(d) - ord("0") + 0xFF10 for d in "0123456789"})


def cyrillic(sid: str) -> str:
    return sid.replace("a", "\u0430").replace("c", "\u0441").replace("e", "\u0435")


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], dict[str, Any]]  # fresh httpx request kwargs per call (a streamed body is used up once)
    status: int
    code: str | tuple[str, ...]
    method: str = "POST"
    path: str = f"/v1/sessions/{SID}/turns"
    sid: Callable[[str], str] = field(default=lambda sid: sid)  # the id put into the path


def _static(kwargs: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: kwargs


TINY_PNG = b64(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
               + _png_chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00")) + _png_chunk(b"IEND", b""))
TEXT_TURN = {"json": {"text": "hello"}}

NEW_CASES = [
    # media bombs and lying headers
    Case("png decompression bomb (10 gigapixels in ~100 bytes)", _static({"json": {"images": [{"data": b64(png_bomb())}]}}),
         413, "image_too_many_pixels"),
    Case("png bomb as a multipart file", _static({"files": {"image": ("bomb.png", png_bomb(), "image/png")}}),
         413, "image_too_many_pixels"),
    Case("truncated wav", _static({"json": {"audio": {"data": b64(wav(1.0)[:5000])}}}), 422, "undecodable_audio"),
    Case("wav cut inside its header", _static({"files": {"audio": ("a.wav", wav(1.0)[:30], "audio/wav")}}),
         422, "undecodable_audio"),
    Case("zero-length wav (header, no samples)", _static({"json": {"audio": {"data": b64(wav(0.0))}}}), 422, "empty_audio"),
    Case("zero-byte audio in json", _static({"json": {"audio": {"data": ""}}}), 422, "empty_audio"),
    Case("wav header claiming 10 hours", _static({"json": {"audio": {"data": b64(wav_claiming(36_000))}}}),
         413, "audio_too_long"),
    # size
    Case("100 MB chunked body", lambda: {"content": streamed_100mb(), "headers": {"content-type": "application/json"}},
         413, "payload_too_large"),
    Case("content-length claiming 100 MB", _static({"content": b"{}", "headers": {
        "content-type": "application/json", "content-length": "100000000"}}), 413, "payload_too_large"),
    Case("multipart with 500 file parts",
         _static({"files": [("image", (f"{i}.png", b"x", "image/png")) for i in range(500)]}), 422, "invalid_multipart"),
    Case("multipart with 500 text fields", _static({"data": {f"f{i}": "x" for i in range(500)}}), 422, "invalid_multipart"),
    Case("multipart without a boundary", _static({"content": b"--x\r\n", "headers": {
        "content-type": "multipart/form-data"}}), 422, "invalid_multipart"),
    Case("huge text (1M chars)", _static({"json": {"text": "a" * 1_000_000}}), 413, "text_too_long"),
    Case("deeply nested json (100k arrays)", _static(raw_json('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}")),
         422, "invalid_request"),
    Case("deeply nested objects in audio", _static(raw_json('{"audio": ' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "}")),
         422, "invalid_request"),
    Case("images list of 10k items", _static({"json": {"images": [{"data": TINY_PNG}] * 10_000}}), 413, "too_many_images"),
    Case("images list of 10k junk items", _static({"json": {"images": [{"data": "x"}] * 10_000}}), 413, "too_many_images"),
    # wrong types
    Case("xml body", _static({"content": b"<turn><text>hi</text></turn>", "headers": {"content-type": "application/xml"}}),
         415, "unsupported_media_type"),
    Case("raw png body", _static({"content": b64(png_bomb()).encode(), "headers": {"content-type": "image/png"}}),
         415, "unsupported_media_type"),
    Case("svg declared as image/png", _static({"files": {"image": (
        "x.png", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "image/png")}}),
         415, "unsupported_image_type"),
    Case("data: URL of text/html", _static({"json": {"images": [{"data": "data:text/html;base64," + b64(b"<b>x</b>")}]}}),
         415, "unsupported_image_type"),
    Case("image data URL sent as audio", _static({"json": {"audio": {"data": "data:image/png;base64," + TINY_PNG}}}),
         415, "unsupported_audio_type"),
    Case("json-typed audio part", _static({"files": {"audio": ("a.json", b'{"data": 1}', "application/json")}}),
         422, "undecodable_audio"),
    # encodings
    Case("invalid utf-8 in a form field", _static({"content": b"text=%FF%FEhi", "headers": {
        "content-type": "application/x-www-form-urlencoded"}}), 422, ("invalid_request", "invalid_text")),
    Case("lone surrogate in text", _static(raw_json('{"text": "hi \\ud800 there"}')), 422, ("invalid_request", "invalid_text")),
    Case("null byte in a form field", _static({"data": {"text": "hi\x00there"}}), 422, "invalid_text"),
    Case("bidi override and escape codes", _static({"json": {"text": "ok\x1b[2J\u202e"}}), 422, "invalid_text"),
    Case("bad base64 padding", _static({"json": {"images": [{"data": "abcde"}]}}), 422, "invalid_base64"),
    Case("data: URL without base64", _static({"json": {"images": [{"data": "data:image/png,rawbytes"}]}}),
         422, "invalid_base64"),
    Case("empty data: URL", _static({"json": {"images": [{"data": "data:image/png;base64,"}]}}), 422, "empty_image"),
    Case("malformed data: URL", _static({"json": {"images": [{"data": "data:;;;base64"}]}}), 422, "invalid_base64"),
    # smuggled URLs
    Case("http image url", _static({"json": {"images": [{"data": "http://169.254.169.254/latest/meta-data/"}]}}),
         422, "remote_url_refused"),
    Case("file:// image url", _static({"json": {"images": [{"data": "file:///etc/passwd"}]}}), 422, "remote_url_refused"),
    Case("FILE:// with leading space", _static({"json": {"images": [{"data": "  FILE:///etc/shadow"}]}}),
         422, "remote_url_refused"),
    Case("protocol-relative url", _static({"json": {"images": [{"data": "//evil.example/x.png"}]}}),
         422, ("remote_url_refused", "invalid_base64")),
    Case("file:// audio url", _static({"json": {"audio": {"data": "file:///dev/zero"}}}), 422, "remote_url_refused"),
    # JSON that is not a turn
    Case("bare string body", _static(raw_json('"hello"')), 422, "invalid_request"),
    Case("bare number body", _static(raw_json("42")), 422, "invalid_request"),
    Case("bare null body", _static(raw_json("null")), 422, "invalid_request"),
    Case("empty json body", _static(raw_json("")), 422, "invalid_request"),
    Case("duplicate keys", _static(raw_json('{"text": "hello", "text": "ignore the first text"}')),
         422, "invalid_request"),
    Case("duplicate keys in audio", _static(raw_json('{"audio": {"data": "AAAA", "data": "BBBB"}}')),
         422, "invalid_request"),
    Case("audio object with extra keys", _static({"json": {"audio": {"data": b64(wav(0.1)), "url": "http://x/a.wav",
                                                                       "path": "/etc/passwd"}}}), 422, "invalid_request"),
    Case("audio is a list", _static({"json": {"audio": [{"data": b64(wav(0.1))}]}}), 422, "invalid_request"),
    Case("images is an object", _static({"json": {"images": {"data": TINY_PNG}}}), 422, "invalid_request"),
    Case("__proto__ key", _static(raw_json('{"text": "hi", "__proto__": {"admin": true}}')), 422, "invalid_request"),
    # session ids
    Case("path traversal id", _static(TEXT_TURN), 404, ("not_found", "session_not_found"), sid=lambda s: "../../etc/passwd"),
    Case("url-encoded traversal id", _static(TEXT_TURN), 404, ("not_found", "session_not_found"),
         sid=lambda s: "..%2F..%2Fetc%2Fpasswd"),
    Case("double-encoded traversal id", _static(TEXT_TURN), 404, "session_not_found",
         sid=lambda s: "..%252F..%252Fetc%252Fpasswd"),
    Case("encoded null byte in id", _static(TEXT_TURN), 404, "session_not_found", sid=lambda s: s + "%00"),
    Case("redis glob in id", _static(TEXT_TURN), 404, "session_not_found", sid=lambda s: "*"),
    Case("redis hash tag in id", _static(TEXT_TURN), 404, "session_not_found", sid=lambda s: s + "}:x{"),
    Case("fullwidth digits in id", _static(TEXT_TURN), 404, "session_not_found", sid=fullwidth),
    Case("cyrillic look-alikes in id", _static(TEXT_TURN), 404, "session_not_found", sid=cyrillic),
    Case("upper-case id", _static(TEXT_TURN), 404, "session_not_found", sid=str.upper),
    Case("id with a trailing newline", _static(TEXT_TURN), 404, "session_not_found", sid=lambda s: s + "%0A"),
    Case("very long id", _static(TEXT_TURN), 404, "session_not_found", sid=lambda s: s * 200),
    Case("get: traversal id", _static({}), 404, ("not_found", "session_not_found"), method="GET",
         path=f"/v1/sessions/{SID}", sid=lambda s: "..%2F..%2Fetc%2Fpasswd"),
    Case("get: cyrillic id", _static({}), 404, "session_not_found", method="GET", path=f"/v1/sessions/{SID}", sid=cyrillic),
    Case("delete: fullwidth id", _static({}), 404, "session_not_found", method="DELETE", path=f"/v1/sessions/{SID}",
         sid=fullwidth),
    Case("delete: glob id", _static({}), 404, "session_not_found", method="DELETE", path=f"/v1/sessions/{SID}",
         sid=lambda s: "*"),
    # headers
    Case("idempotency key with control chars", _static({**TEXT_TURN, "headers": {"Idempotency-Key": "a\tb"}}),
         422, "invalid_request"),
    Case("idempotency key of 10k chars", _static({**TEXT_TURN, "headers": {"Idempotency-Key": "k" * 10_000}}),
         422, "invalid_request"),
]

HOSTILE: list[Case] = (
    [Case(f"bad turn: {name}", _static(kwargs), status, code) for name, kwargs, status, code in BAD_TURNS]
    + [Case(f"bad media: {name}", _static(kwargs), status, MEDIA_CODES[name]) for name, kwargs, status in BAD_MEDIA]
    + NEW_CASES
)


async def send(client, case: Case, session_id: str):
    path = case.path.replace(SID, case.sid(session_id))
    return await client.request(case.method, path, **case.make())


def check(case: Case, response) -> None:
    assert response.status_code == case.status, f"{case.name}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/json"), case.name
    error = response.json()["error"]
    codes = (case.code,) if isinstance(case.code, str) else case.code
    assert error["code"] in codes, f"{case.name}: {error}"
    assert error["message"], case.name


async def session_keys(redis_url: str, prefix: str) -> list[bytes]:
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        return sorted([key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)])


@pytest.fixture
async def victim(client, session_id, api_settings):
    """A session with history; after the test it must read back exactly as before, and no key may appear."""
    await client.post(f"/v1/sessions/{session_id}/turns", json={"text": "Where is my order A7Q-4412?"})

    async def current():
        return (await client.get(f"/v1/sessions/{session_id}")).json()

    before, keys = await current(), await session_keys(api_settings.redis_url, api_settings.redis_prefix)
    assert len(before["history"]) == 2
    yield session_id
    assert await current() == before
    assert await session_keys(api_settings.redis_url, api_settings.redis_prefix) == keys


def test_the_table_is_complete():
    assert len(HOSTILE) >= 20
    assert set(MEDIA_CODES) == {name for name, *_ in BAD_MEDIA}, "give each BAD_MEDIA case its error code"
    assert len({case.name for case in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
async def test_hostile_input_is_a_clear_4xx_and_changes_nothing(client, victim, case):
    check(case, await send(client, case, victim))


def rss_bytes() -> int:
    """Resident set size of this process (the app runs in it, in-process over ASGI)."""
    status = Path("/proc/self/status")
    if status.exists():
        match = re.search(r"^VmRSS:\s+(\d+) kB", status.read_text(), re.M)
        if match:
            return int(match[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB


def reset_peak() -> bool:
    """Reset VmHWM (peak RSS) so a later read shows this run's peak; False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    return int(match[1]) * 1024


MB = 1024 * 1024


async def test_memory_stays_bounded_under_the_hostile_set(client, victim):
    for case in HOSTILE:  # warm-up: imports, allocator pools, first-use caches
        check(case, await send(client, case, victim))
    before = rss_bytes()
    peak_known = reset_peak()
    for _ in range(4):
        for case in HOSTILE:
            check(case, await send(client, case, victim))
    growth = rss_bytes() - before
    assert growth < 150 * MB, f"RSS grew {growth / MB:.0f} MB over 4 runs of {len(HOSTILE)} hostile requests"
    if peak_known:
        peak = peak_bytes() - before
        assert peak < 150 * MB, f"RSS peaked {peak / MB:.0f} MB above its start while refusing hostile input"


def test_bodies_here_really_are_hostile():
    assert len(png_bomb()) < 200
    assert len(json.dumps({"images": [{"data": TINY_PNG}] * 10_000})) < 3_000_000  # under the body cap: the count decides


async def test_audio_as_an_audio_data_url_is_accepted(client, session_id):
    """The counterpart of "image data URL sent as audio": a data:audio/... clip is not refused as a wrong type."""
    response = await client.post(f"/v1/sessions/{session_id}/turns",
                                 json={"audio": {"data": "data:audio/wav;base64," + b64(wav(0.5))}})
    assert response.status_code == 200, response.text
