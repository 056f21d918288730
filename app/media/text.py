"""Typed text of a turn: validated, stripped."""

from app.errors import ParleyError

# Characters a person never types; they only confuse the tokenizer and the logs.
CONTROL_CHARS = {chr(c) for c in range(32) if chr(c) not in "\t\n\r"} | {"\x7f"}


def clean_text(text: str | None, *, max_chars: int) -> str:
    """The typed text of a turn, stripped; "" when there is none."""
    if text is None:
        return ""
    if any(ch in CONTROL_CHARS for ch in text):
        raise ParleyError("invalid", "invalid_text", "text contains control characters (such as NUL); send plain text")
    text = text.strip()
    if len(text) > max_chars:
        raise ParleyError("too_large", "text_too_long", f"text is {len(text)} characters; the limit is {max_chars}")
    return text
