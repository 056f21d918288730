"""Slot types by name: the built-in ones register themselves on import; a domain file can name more
modules under `slot_type_modules` (see README, "Slot types")."""

from app.dialogue.slot_types import codes, contact, dates, money, vocabulary  # noqa: F401  (they register)
from app.dialogue.slot_types.base import (
    ANSWER, EXACT, NAMED, SLOT_TYPES, Labels, Match, SlotType, bare_answer, register, slot_type,
)

__all__ = ["ANSWER", "EXACT", "NAMED", "SLOT_TYPES", "Labels", "Match", "SlotType", "bare_answer", "register",
           "slot_type"]
