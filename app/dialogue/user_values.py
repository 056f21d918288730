"""What simulated customers fill their words with: order numbers, emails, products..., in pools split so the
held-out dialogues use values no training dialogue has; and the ways people mangle them (spoken forms,
typos).

Pure and seeded: the same seed gives the same pools.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from app.dialogue.domain import Domain

POOL_SIZE = 600  # values of each kind per pool
HELDOUT_PRODUCTS = ("kettle", "monitor", "backpack", "router")  # said only in held-out dialogues
FIRST_NAMES = ("jane", "sam", "alex", "maria", "li", "omar", "priya", "tom", "chloe", "diego", "yuki", "ben", "ana",
               "kofi", "emma", "raj", "nina", "leo", "sara", "ivan")
LAST_NAMES = ("doe", "smith", "khan", "garcia", "chen", "okafor", "patel", "nguyen", "muller", "rossi", "brown", "lee")
MAIL_DOMAINS = ("example.com", "example.org", "mail.example.net", "shop.example.co.uk")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CARRIERS = ("UPS", "FedEx", "DHL", "Royal Mail", "DPD", "USPS")
UNKNOWN_CODES = ("X-999", "Q-77", "Z-404", "M-500", "R-13", "F-88")  # no knowledge-base entry has these
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class ValuePool:
    order_ids: tuple[str, ...]
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    amounts: tuple[str, ...]
    tracking_numbers: tuple[str, ...]
    products: tuple[str, ...]  # canonical values of the domain's product slot
    error_codes: tuple[str, ...]  # codes the knowledge base knows


def value_pools(domain: Domain, codes: tuple[str, ...], seed: int) -> tuple[ValuePool, ValuePool]:
    """(train, held-out) pools with no value in common; `codes`: the knowledge base's error codes."""
    rng = random.Random(seed)
    made = {kind: _distinct(maker, rng, 2 * POOL_SIZE) for kind, maker in (
        ("order_ids", _order_id), ("emails", _email), ("phones", _phone), ("amounts", _amount),
        ("tracking_numbers", _tracking))}
    products = tuple(domain.slots["product"].values)
    held_codes = codes[::6]  # every sixth code is held out
    train = ValuePool(**{k: v[:POOL_SIZE] for k, v in made.items()},
                      products=tuple(p for p in products if p not in HELDOUT_PRODUCTS),
                      error_codes=tuple(c for c in codes if c not in held_codes))
    heldout = ValuePool(**{k: v[POOL_SIZE:] for k, v in made.items()},
                        products=tuple(p for p in products if p in HELDOUT_PRODUCTS), error_codes=held_codes)
    return train, heldout


def spoken(value: str) -> str:
    """A value as a person reads it out: "A7Q-4412" -> "A seven Q dash four four one two",
    "jane.doe@example.com" -> "jane dot doe at example dot com"."""
    if "@" in value:
        return value.replace("@", " at ").replace(".", " dot ")
    words = []
    for ch in value:
        if ch.isdigit():
            words.append(DIGIT_WORDS[int(ch)])
        elif ch == "-":
            words.append("dash")
        elif ch.isalpha():
            words.append(ch.upper())
    return " ".join(words)


def typo(text: str, rng: random.Random, *, keep: tuple[str, ...] = ()) -> str:
    """`text` with one slip of the keyboard (two letters swapped, one dropped or doubled) in a word of four
    letters or more that is none of `keep` (a value must stay as it was given)."""
    words = text.split(" ")
    spots = [i for i, word in enumerate(words) if len(word) >= 4 and word.isalpha() and word not in keep]
    if not spots:
        return text
    i = rng.choice(spots)
    word = words[i]
    at = rng.randrange(1, len(word) - 1)
    slip = rng.randrange(3)
    if slip == 0:
        word = word[:at] + word[at + 1] + word[at] + word[at + 2:]
    elif slip == 1:
        word = word[:at] + word[at + 1:]
    else:
        word = word[:at] + word[at] + word[at:]
    words[i] = word
    return " ".join(words)


def _distinct(maker: Callable[[random.Random], str], rng: random.Random, count: int) -> tuple[str, ...]:
    made: dict[str, None] = {}
    while len(made) < count:
        made[maker(rng)] = None
    return tuple(made)


def _order_id(rng: random.Random) -> str:
    letters, digits = string.ascii_uppercase, string.digits
    shape = rng.randrange(4)
    if shape == 0:  # "A7Q-4412"
        return f"{rng.choice(letters)}{rng.choice(digits)}{rng.choice(letters)}-{rng.randrange(1000, 9999)}"
    if shape == 1:  # "KX-55210"
        return f"{rng.choice(letters)}{rng.choice(letters)}-{rng.randrange(10000, 99999)}"
    if shape == 2:  # "5521"
        return str(rng.randrange(1000, 9999))
    return str(rng.randrange(10000, 99999))  # "90817"


def _email(rng: random.Random) -> str:
    # No underscore: the policy says a slot value with "_" as a space (coffee_maker), which breaks an email.
    name = rng.choice(FIRST_NAMES) + rng.choice((".", "")) + rng.choice(LAST_NAMES)
    return f"{name}{rng.choice(('', str(rng.randrange(1, 99))))}@{rng.choice(MAIL_DOMAINS)}"


def _phone(rng: random.Random) -> str:
    return f"{rng.randrange(200, 999)} 555 {rng.randrange(1000, 9999)}"


def _amount(rng: random.Random) -> str:
    return f"${rng.randrange(5, 900)}.{rng.randrange(100):02d}"


def _tracking(rng: random.Random) -> str:
    return "1Z" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
