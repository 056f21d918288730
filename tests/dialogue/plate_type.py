"""A slot type defined outside app/: what a deployment writes to add one (see README, "Slot types")."""

import re

from app.dialogue.slot_types import EXACT, Labels, Match, SlotType, register

_PLATE = re.compile(r"(?<!\w)[A-Z]{2}\d{2} ?[A-Z]{3}(?!\w)")  # a UK number plate: "AB12 CDE"


@register
class NumberPlate(SlotType):
    name = "number_plate"
    priority = 35  # before ids: a plate is never an order id
    default_mentions = ("registration", "plate")

    def extract(self, text: str, labels: Labels, *, requested: bool) -> list[Match]:
        return [Match(m.group(), EXACT, m.span(), named=self.labelled(text, labels, m.start()))
                for m in _PLATE.finditer(text)]

    def normalise(self, raw: str) -> str:
        return raw.replace(" ", "")
