"""Domain errors: what the pipeline and media decoding refuse, in their own terms.

Plain exceptions that import nothing of the app. Each has a `kind` (what went wrong), a stable `code` for
clients and a `message` that says what to do; only app/api/ turns a kind into an HTTP status
(app/api/errors.py). The session store's errors (app/store/base.py) and the remote decoder's
(models/remote.py) are mapped there too.
"""

from typing import Literal

ErrorKind = Literal[
    "invalid",  # the request cannot be processed as sent: malformed, self-contradictory, or asking for what is off
    "unsatisfiable",  # well-formed, but the conversation cannot give what it demands (a forced tool's arguments)
    "too_large",  # over a configured limit (bytes, seconds, pixels, characters)
    "unsupported_media",  # a media type that is not accepted
]


class ParleyError(Exception):
    """A refusal the caller can act on. `param`: the request field at fault, where known."""

    def __init__(self, kind: ErrorKind, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.code, self.message, self.param = kind, code, message, param
