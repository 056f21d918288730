"""Logging: one JSON object per line (or plain text), each record stamped with the id of the request it belongs to.

The request id lives in a contextvar that app/api/middleware/observe.py sets per request; every record created
while the request runs (any logger, any thread started with the context, e.g. asyncio.to_thread) carries it as
`record.request_id`. Records are redacted when created (app/observability/redaction.py), so both formats print
masked text.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from app.observability.redaction import redact

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# Attributes every LogRecord has; anything else on a record came in through `extra=` and is printed as a field.
# uvicorn's `color_message` is its message again with terminal colour codes.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id",
                                                                         "color_message"}


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", "request_id", ...extra fields, "exception"?} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                # `extra=` fields were not seen by the redaction filter: masked here.
                entry[key] = redact(value) if isinstance(value, str) else _plain(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = json.dumps(value, default=str)
    return json.loads(text) if redact(text) == text else redact(text)


def logging_config(fmt: str, level: str) -> dict[str, Any]:
    """A dictConfig for the whole process (uvicorn's loggers included): one stderr handler on the root logger."""
    # A record made before install_request_ids() has no request_id: "-" then, not a formatting error.
    text = {"()": logging.Formatter, "fmt": TEXT_FORMAT, "defaults": {"request_id": "-"}}
    formatter = {"()": JsonFormatter} if fmt == "json" else text
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"parley": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "parley", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        # uvicorn's own loggers pass their records to the root handler instead of printing them in their format.
        "loggers": {name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


_installed = False


def install_request_ids() -> None:
    """Stamp every record created from now on with the current request id (None outside a request). Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    logging.setLogRecordFactory(factory)
