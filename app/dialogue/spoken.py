"""Rewrite spoken forms in a speech transcript into the written forms slots.py parses.

Speech recognisers often spell out what a user reads aloud: "four five one two",
"A seven Q dash four four one two", "jane dot doe at example dot com". This
module turns those back into "4512", "A7Q-4412" and "jane.doe@example.com" so
one set of regexes serves typed, OCR and spoken text alike. Typed text passes
through almost unchanged: only number words become digits ("two lamps" ->
"2 lamps"), which no slot pattern mistakes for an id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIGITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
REPEATS = {"double": 2, "triple": 3}  # "double five" -> 55
DASH_WORDS = {"dash", "hyphen"}
# A lone "a" or "i" next to digits is usually the English word ("a 100 dollar
# charge"), so such a run only becomes a code when something else marks it as one.
WORD_LETTERS = {"a", "i"}
CODE_FRAGMENT = re.compile(r"[A-Za-z][0-9]")  # a letter then a digit: inside an id, not a unit after a number
MIN_CODE_DIGITS = 3  # shorter runs ("a 2", "B 12") are quantities or names, not ids

_CARDINAL_WORDS = set(DIGITS) | set(TEENS) | set(TENS) | {"hundred", "thousand"}
_HYPHENATED_TENS = re.compile(rf"\b({'|'.join(TENS)})-({'|'.join(DIGITS)})\b", re.IGNORECASE)
_SPLIT_PUNCT = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)
# A code a transcriber wrote letter by letter with dashes: "K-X-9-0-8-1-7" -> "KX90817".
_DASH_SPELLED = re.compile(r"(?<![\w-])(?=[a-z0-9-]*\d)(?:[a-z0-9]-){3,}[a-z0-9](?![\w-])", re.IGNORECASE)
# Digits a transcriber grouped with dots: Whisper wrote "five five two two" as "5.5.22". Three or more
# groups of one or two digits: no amount ("$5.50") or address ("192.168.1.1") has that shape.
_DOT_SPELLED = re.compile(r"(?<![\w.$€£])\d{1,2}(?:\.\d{1,2}){2,}(?![\w]|\.\d)")
# "double four one two" as Whisper writes it: "double 412" (the repeat applies to the first digit).
_REPEATED_DIGIT = re.compile(r"\b(double|triple)\s+(\d)", re.IGNORECASE)
# A code spelled with a comma after each character: "a 7, Q, 4, 4, 1, 2" -> "a 7 Q 4 4 1 2" (joined below).
_COMMA_SPELLED = re.compile(r"(?<![\w,])[a-z0-9](?:,? [a-z0-9]){3,}(?![\w])", re.IGNORECASE)

# "jane dot doe at example dot com" / "jane.doe at example.com"; the domain must
# contain a dot so that "looking at the box" is never rewritten.
_LOCAL = r"[a-z0-9][a-z0-9._+-]*"
_LOCAL_SEP = r"\s+(?:dot|underscore|dash|hyphen)\s+"
_DOMAIN = r"[a-z0-9-]+(?:(?:\s+dot\s+|\.)[a-z0-9-]+)+"
# Not when the words after "at" run into a typed address ("email me at jo.smith@example.org").
_SPOKEN_EMAIL = re.compile(rf"(?<![\w@])({_LOCAL}(?:{_LOCAL_SEP}{_LOCAL})*)\s+at\s+({_DOMAIN})\b(?![\w.-]*@)",
                           re.IGNORECASE)
_SPOKEN_SYMBOLS = {"dot": ".", "underscore": "_", "dash": "-", "hyphen": "-"}


@dataclass
class _Token:
    lead: str  # punctuation before the word, e.g. "(" or "$"
    core: str
    trail: str  # punctuation after the word, e.g. "," or "."
    spoken: bool = False  # rebuilt from spoken words, so it may join a code

    def render(self) -> str:
        return f"{self.lead}{self.core}{self.trail}"


def normalize_spoken(text: str) -> str:
    """Rewrite spelled-out digits, codes and email addresses into written form."""
    text = _DASH_SPELLED.sub(lambda m: m.group().replace("-", ""), _HYPHENATED_TENS.sub(r"\1 \2", text))
    text = _DOT_SPELLED.sub(lambda m: m.group().replace(".", ""), text)
    text = _REPEATED_DIGIT.sub(lambda m: m.group(2) * REPEATS[m.group(1).lower()], text)
    text = _COMMA_SPELLED.sub(lambda m: m.group().replace(",", "") if re.search(r"\d", m.group()) else m.group(), text)
    tokens = _tokenize(text)
    tokens = _join_codes(_join_numbers(tokens))
    return _SPOKEN_EMAIL.sub(_write_email, " ".join(t.render() for t in tokens))


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    for word in text.split():
        lead, core, trail = _SPLIT_PUNCT.match(word).groups()  # type: ignore[union-attr]
        tokens.append(_Token(lead, core, trail))
    return tokens


def _adjacent(tokens: list[_Token], j: int) -> bool:
    """Punctuation between two words ("four, five") ends a spoken run."""
    return tokens[j - 1].trail == "" and tokens[j].lead == ""


# --- numbers -----------------------------------------------------------------


def _join_numbers(tokens: list[_Token]) -> list[_Token]:
    """Replace each run of number words with one token of digits."""
    out: list[_Token] = []
    i = 0
    while i < len(tokens):
        end = _number_run_end(tokens, i)
        if end == i:
            out.append(tokens[i])
            i += 1
            continue
        words = [t.core.lower() for t in tokens[i:end]]
        out.append(_Token(tokens[i].lead, _words_to_digits(words), tokens[end - 1].trail, spoken=True))
        i = end
    return out


def _number_run_end(tokens: list[_Token], start: int) -> int:
    """Index just past the run of number words starting at `start` (== start if none)."""
    words = [t.core.lower() for t in tokens]
    j = start
    while j < len(tokens) and (j == start or _adjacent(tokens, j)):
        word, prev = words[j], words[j - 1] if j > start else None
        nxt = words[j + 1] if j + 1 < len(words) else None
        in_run = j > start
        if word in _CARDINAL_WORDS:
            j += 1
        elif word in REPEATS and (nxt in DIGITS or nxt == "oh"):
            j += 2  # the repeated digit belongs to this step
        elif in_run and word == "oh":  # "five oh one"; a leading "oh" is an interjection
            j += 1
        elif in_run and word in {"and", "point"} and nxt in _CARDINAL_WORDS:
            if word == "and" and prev not in {"hundred", "thousand"}:
                break  # "two and three" is two numbers, not one
            j += 1
        else:
            break
    return j


def _words_to_digits(words: list[str]) -> str:
    """["four", "five", "one", "two"] -> "4512"; ["twenty", "four"] -> "24".

    Consecutive cardinals are concatenated, which is how people read ids aloud:
    "forty five twelve" -> "4512", "nineteen ninety nine" -> "1999".
    """
    parts: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "point":
            parts.append(".")
            i += 1
        elif word in REPEATS:
            parts.append(str(DIGITS.get(words[i + 1], 0)) * REPEATS[word])
            i += 2
        elif word == "and":
            i += 1
        else:
            value, i = _parse_cardinal(words, i)
            parts.append(str(value))
    return "".join(parts)


def _parse_cardinal(words: list[str], i: int) -> tuple[int, int]:
    """Parse one cardinal ("two thousand twenty four") from words[i]; return (value, next i)."""
    value = 1 if words[i] == "thousand" else None
    if value is None:
        value, i = _parse_hundreds(words, i)
    if i < len(words) and words[i] == "thousand":
        value, i = value * 1000, _skip_and(words, i + 1)
        if i < len(words) and words[i] in _CARDINAL_WORDS - {"thousand"}:
            rest, i = _parse_hundreds(words, i)
            value += rest
    return value, i


def _parse_hundreds(words: list[str], i: int) -> tuple[int, int]:
    if words[i] == "hundred":
        value, i = 100, i + 1
    elif i + 1 < len(words) and words[i] in DIGITS and words[i + 1] == "hundred":
        value, i = DIGITS[words[i]] * 100, i + 2
    else:
        return _parse_below_hundred(words, i)
    i = _skip_and(words, i)
    if i < len(words) and (words[i] in TENS or words[i] in TEENS or words[i] in DIGITS or words[i] == "oh"):
        rest, i = _parse_below_hundred(words, i)
        value += rest
    return value, i


def _parse_below_hundred(words: list[str], i: int) -> tuple[int, int]:
    word = words[i]
    if word in TENS:
        nxt = words[i + 1] if i + 1 < len(words) else None
        if nxt in DIGITS and DIGITS[nxt] > 0:  # "thirty seven"
            return TENS[word] + DIGITS[nxt], i + 2
        return TENS[word], i + 1
    if word in TEENS:
        return TEENS[word], i + 1
    return DIGITS.get(word, 0), i + 1  # a digit word, or "oh" inside a run


def _skip_and(words: list[str], i: int) -> int:
    return i + 1 if i < len(words) and words[i] == "and" else i


# --- letter/digit codes --------------------------------------------------------


def _join_codes(tokens: list[_Token]) -> list[_Token]:
    """Glue spelled codes: "A 7 Q dash 4412" -> "A7Q-4412", "K X 90817" -> "KX90817"."""
    out: list[_Token] = []
    i = 0
    while i < len(tokens):
        end = i
        while end < len(tokens) and _is_code_part(tokens[end]) and (end == i or _adjacent(tokens, end)):
            end += 1
        if end == i:
            out.append(tokens[i])
            i += 1
            continue
        run = tokens[i:end]
        while run and run[0].core.lower() in DASH_WORDS:  # a code never starts with a dash
            out.append(run.pop(0))
        tail: list[_Token] = []
        while run and run[-1].core.lower() in DASH_WORDS:
            tail.insert(0, run.pop())
        if _is_spoken_code(run):
            code = "".join("-" if t.core.lower() in DASH_WORDS else t.core.upper() for t in run)
            out.append(_Token(run[0].lead, code, run[-1].trail, spoken=True))
        else:
            out.extend(run)
        out.extend(tail)
        i = end
    return out


def _is_code_part(token: _Token) -> bool:
    core = token.core
    return ((len(core) == 1 and core.isascii() and core.isalpha()) or core.isdigit() or core.lower() in DASH_WORDS
            or _is_code_fragment(core))


def _is_code_fragment(core: str) -> bool:
    """Letters and digits mixed, a letter followed by a digit: "7Q4412" is part of an id as Whisper writes one
    ("a 7Q4412" for "A, seven, Q, four four one two"); "128GB" or "4K" is a size, its letters a unit."""
    return core.isascii() and core.isalnum() and CODE_FRAGMENT.search(core) is not None


def _is_spoken_code(run: list[_Token]) -> bool:
    """Join only runs that were spoken, or spelled character by character ("K X 9 0 8 1 7"), and look like
    an id; typed digit groups ("415 555 0100") stay as typed."""
    digits = sum(ch.isdigit() for t in run if t.core.lower() not in DASH_WORDS for ch in t.core)
    letters = [t.core.lower() for t in run if t.core.isalpha() and len(t.core) == 1]
    has_dash = any(t.core.lower() in DASH_WORDS for t in run)
    fragment = any(_is_code_fragment(t.core) for t in run)  # a letter inside digits: this is an id
    clearly_letters = len(letters) >= 2 or any(letter not in WORD_LETTERS for letter in letters)
    spelled = clearly_letters and all(len(t.core) == 1 for t in run)
    if len(run) < 2 or not (spelled or has_dash or fragment or any(t.spoken for t in run)):
        return False
    return digits >= MIN_CODE_DIGITS and (not letters or clearly_letters or has_dash or fragment)


# --- email -------------------------------------------------------------------


def _write_email(match: re.Match[str]) -> str:
    local = re.sub(_LOCAL_SEP, lambda m: _SPOKEN_SYMBOLS[m.group().strip().lower()], match.group(1), flags=re.IGNORECASE)
    domain = re.sub(r"\s+dot\s+", ".", match.group(2), flags=re.IGNORECASE)
    return f"{local}@{domain}".lower()
