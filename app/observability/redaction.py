"""Personal data out of the logs: emails, phone numbers and card-like numbers are masked in every record.

`RedactingFilter` rewrites a record's message, args and exception text; `install_redaction()` applies it to
every record the process creates (any logger, any handler, uvicorn's included), once.
"""

from __future__ import annotations

import logging
import re
from typing import Any

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 13-19 digits, single spaces or dashes allowed between them (4111 1111 1111 1111, 4111-1111-1111-1111).
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
# +44 20 7946 0958, (555) 123-4567, 555.123.4567, +15551234567: 7-15 digits in groups; a group that runs on into
# a decimal fraction ("200 5684.4ms" in an access log) is a number, not part of a phone number.
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]?\d{2,5}){1,4}(?![\w-]|\.\d)")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


def _phone(match: re.Match[str]) -> str:
    text = match[0]
    digits = sum(ch.isdigit() for ch in text)
    if not 7 <= digits <= 15 or ISO_DATE.match(text) or re.fullmatch(r"\d+", text) and digits < 10:
        return text  # a date, a count, a port: not a phone number
    return "[phone]"


def redact(text: str) -> str:
    """`text` with emails, card-like numbers and phone numbers replaced by [email], [card], [phone]."""
    text = EMAIL.sub("[email]", text)
    text = CARD.sub("[card]", text)
    return PHONE.sub(_phone, text)


class RedactingFilter(logging.Filter):
    """Masks personal data in a record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        original = _message(record)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_arg(value) for key, value in record.args.items()}
        try:  # keep msg/args apart where they still format (some formatters read args, e.g. uvicorn's access log)
            record.getMessage()
        except Exception:  # an arg that was a number is now "[card]": format once, then mask
            record.msg, record.args = redact(original), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return str(record.msg)


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, (bool, float)) or arg is None:
        return arg
    if isinstance(arg, int):
        text = str(arg)
        return arg if redact(text) == text else redact(text)
    if isinstance(arg, (bytes, bytearray)):
        return arg
    text = str(arg)  # an exception, a dict, a model: judged by how it would print
    return arg if redact(text) == text else redact(text)


_installed: RedactingFilter | None = None


def install_redaction() -> RedactingFilter:
    """Redact every log record from now on, at creation (so every handler and logger sees it masked). Idempotent."""
    global _installed
    if _installed is not None:
        return _installed
    _installed = redacting = RedactingFilter()
    make_record = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        redacting.filter(record)
        return record

    logging.setLogRecordFactory(factory)
    return _installed
