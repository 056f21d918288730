"""Privacy: personal data is masked in logs, a session can be exported and erased, media never touches disk or logs."""

import base64
import logging
import os
import tempfile
from pathlib import Path

import pytest
import redis.asyncio

from app.observability.redaction import RedactingFilter, install_redaction, redact
from tests.samples import document, encoded, speech_wav


@pytest.mark.parametrize(("raw", "masked"), [
    ("write to jane.doe+orders@example.co.uk please", "write to [email] please"),
    ("call +44 20 7946 0958 or (555) 123-4567", "call [phone] or [phone]"),
    ("US number 555.123.4567, intl +15551234567", "US number [phone], intl [phone]"),
    ("card 4111 1111 1111 1111 ok", "card [card] ok"),
    ("card 4111-1111-1111-1111 ok", "card [card] ok"),
    ("card 4111111111111111 and amex 378282246310005", "card [card] and amex [card]"),
    ("19 digits 6011000990139424123", "19 digits [card]"),
])
def test_redact_masks_each_kind(raw, masked):
    assert redact(raw) == masked


@pytest.mark.parametrize("kept", [
    "order A7Q-4412 on 2026-11-23 took 2150.0 ms",
    "session 7f3c0b6a9d2e4f1a8b5c6d7e8f9a0b1c turn 3",
    "redis at 127.0.0.1:6379, 120 turns per minute, status 404",
    "order KX-90817 total $37.50",
    '"POST /v1/sessions/x/turns HTTP/1.1" 200 5684.4ms',
])
def test_redact_keeps_what_is_not_personal(kept):
    assert redact(kept) == kept


def _record(msg, args):
    return logging.LogRecord("parley.test", logging.INFO, __file__, 1, msg, args, None)


def test_filter_masks_message_and_args():
    pii = RedactingFilter()
    record = _record("user %s said %r, card %d", ("jane@example.com", "ring me on +1 555 123 4567", 4111111111111111))
    assert pii.filter(record) is True
    message = record.getMessage()
    assert "jane@example.com" not in message and "555 123 4567" not in message and "4111111111111111" not in message
    assert "[email]" in message and "[phone]" in message and "[card]" in message
    mapping = _record("%(who)s", ({"who": "bob@example.org"},))
    pii.filter(mapping)
    assert mapping.getMessage() == "[email]"
    plain = _record("%s %s:%d", ("GET", "/v1/sessions", 200))  # args that need no masking keep their shape
    pii.filter(plain)
    assert plain.args == ("GET", "/v1/sessions", 200)


def test_filter_masks_exception_text():
    try:
        raise ValueError("bad address jane@example.com")
    except ValueError:
        record = logging.LogRecord("parley.test", logging.ERROR, __file__, 1, "failed", None, __import__("sys").exc_info())
    RedactingFilter().filter(record)
    assert "jane@example.com" not in record.exc_text and "[email]" in record.exc_text


def test_install_redaction_masks_every_logger(caplog):
    before = logging.getLogRecordFactory()
    try:
        assert install_redaction() is install_redaction()  # idempotent
        with caplog.at_level(logging.INFO):
            logging.getLogger("some.library.deep.down").info("contact %s / 4111-1111-1111-1111", "a.b@example.com")
        assert caplog.records[-1].getMessage() == "contact [email] / [card]"
    finally:
        logging.setLogRecordFactory(before)
        import app.observability.redaction
        app.observability.redaction._installed = None


async def _session_keys(api_settings, session_id: str) -> list[bytes]:
    async with redis.asyncio.Redis.from_url(api_settings.redis_url) as client:
        return [key async for key in client.scan_iter(match=f"{api_settings.redis_prefix}:*", count=1000)
                if session_id.encode() in key]


async def test_a_session_is_exported_then_erased(client, session_id, api_settings):
    await client.post(f"/v1/sessions/{session_id}/turns", json={"text": "Where is my order A7Q-4412?"},
                      headers={"Idempotency-Key": "privacy-1"})
    exported = await client.get(f"/v1/sessions/{session_id}")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/json")
    body = exported.json()
    assert body["id"] == session_id and body["state"]["slots"]["order_id"] == "A7Q-4412"
    assert [entry["role"] for entry in body["history"]] == ["user", "assistant"]
    assert await _session_keys(api_settings, session_id), "the session should have keys before it is erased"

    erased = await client.delete(f"/v1/sessions/{session_id}")
    assert erased.status_code == 204
    assert await _session_keys(api_settings, session_id) == []
    assert (await client.get(f"/v1/sessions/{session_id}")).status_code == 404
    assert (await client.delete(f"/v1/sessions/{session_id}")).status_code == 404


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


async def test_media_never_reaches_disk_or_logs(client, session_id, tmp_path, monkeypatch, caplog):
    png = encoded(document(["ACME STORE", "Order No: A7Q-4412"]))
    wav = speech_wav("my order number is four five one two")
    png_b64, wav_b64 = base64.b64encode(png).decode(), base64.b64encode(wav).decode()
    watched_tmp, watched_cwd = tmp_path / "tmp", tmp_path / "cwd"
    watched_tmp.mkdir()
    watched_cwd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(watched_tmp))
    monkeypatch.setenv("TMPDIR", str(watched_tmp))
    monkeypatch.chdir(watched_cwd)
    assert tempfile.gettempdir() == str(watched_tmp) and Path(os.getcwd()) == watched_cwd

    with caplog.at_level(logging.DEBUG):
        as_json = await client.post(f"/v1/sessions/{session_id}/turns",
                                    json={"images": [{"data": png_b64}], "audio": {"data": wav_b64}})
        as_form = await client.post(f"/v1/sessions/{session_id}/turns", files={
            "image": ("receipt.png", png, "image/png"), "audio": ("voice.wav", wav, "audio/wav")})
        broken = await client.post(f"/v1/sessions/{session_id}/turns",
                                   json={"images": [{"data": png_b64[: len(png_b64) // 2]}]})
    assert as_json.status_code == 200, as_json.text
    assert as_form.status_code == 200, as_form.text
    assert broken.status_code == 422

    assert _files(watched_tmp) == set(), "a turn wrote files to the temp dir"
    assert _files(watched_cwd) == set(), "a turn wrote files to the working directory"
    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    for secret in (png_b64, wav_b64):
        for start in range(0, 4000, 500):  # any 64-character window of the base64 would give the media away
            assert secret[start:start + 64] not in logged
    assert repr(png[:32])[2:-1] not in logged and repr(wav[44:76])[2:-1] not in logged
