"""A small customer-service dialogue set with rendered photos and espeak-ng speech, for `parley train`
and `parley eval`.

Run from the repository root:  .venv/bin/python -m bench.make_dataset data/cs-demo [--copies 1]
Writes DIR/dialogues.jsonl (one line per turn to answer, the turns before it as context) and DIR/media/
(PNG/JPEG images drawn with Pillow, WAV speech from espeak-ng in a few voices). Nothing binary is kept in
the repository: this script is the data set. `--copies N` re-renders every dialogue N times with other
voices and photo angles, for a (still tiny) training set.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from tests.samples import document, encoded, photo_of, speech_wav

VOICES = ("en-us", "en-us+f3", "en-gb+m3")


@dataclass(frozen=True)
class Turn:
    text: str = ""
    say: str = ""  # spoken by espeak-ng as the turn's audio
    photo: tuple[str, ...] = ()  # lines of a document to draw and photograph
    dark: bool = False  # a light-on-dark screen instead of a paper document
    reply: str = ""  # the reply a good agent gives
    intent: str = ""
    slots: dict[str, str] = field(default_factory=dict)  # every slot the state should hold after this turn


DIALOGUES: list[list[Turn]] = [
    [Turn(text="Hi, my lamp arrived broken", intent="damaged_item", slots={"product": "lamp"},
          reply="I'm sorry your lamp arrived broken. Could you give me your order number?"),
     Turn(text="here is the receipt", photo=("ACME STORE", "Order No: A7Q-4412", "1 x Desk lamp", "Total: $37.50"),
          intent="damaged_item", slots={"product": "lamp", "order_id": "A7Q-4412", "amount": "37.50"},
          reply="Thank you. I've logged the damaged lamp on order A7Q-4412 and a replacement is on its way.")],
    [Turn(say="where is my order", intent="order_status", slots={},
          reply="I can check that for you. What is your order number?"),
     Turn(say="my order number is four five one two", intent="order_status", slots={"order_id": "4512"},
          reply="Order 4512 has shipped and should arrive within three days.")],
    [Turn(text="I want a refund for my headphones", intent="refund_request", slots={"product": "headphones"},
          reply="I can help with a refund for your headphones. What is your order number?"),
     Turn(text="It's KX-90817", intent="refund_request", slots={"product": "headphones", "order_id": "KX-90817"},
          reply="Thanks. I've started a refund for the headphones on order KX-90817.")],
    [Turn(text="My laptop shows this error and won't start",
          photo=("Error 0x80070005", "Access is denied"), dark=True,
          intent="technical_support", slots={"product": "laptop"},
          reply="Sorry about the error 0x80070005 on your laptop. Please restart it as an administrator."),
     Turn(text="that worked, thanks, bye", intent="goodbye", slots={"product": "laptop"},
          reply="Glad it works again. Goodbye!")],
    [Turn(text="I was charged twice this month", intent="billing", slots={},
          reply="Sorry about the double charge. What email is on your account?"),
     Turn(say="my email is jane dot doe at example dot com", intent="billing", slots={"email": "jane.doe@example.com"},
          reply="Thanks. I've flagged the double charge on jane.doe@example.com for a refund.")],
    [Turn(text="I'd like to return a jacket", intent="return_item", slots={"product": "jacket"},
          reply="Sure, I can help you return the jacket. What is your order number?"),
     Turn(text="shipping label attached", photo=("SHIP TO: J. Smith", "Order: BT-55120", "Jacket, size M"),
          intent="return_item", slots={"product": "jacket", "order_id": "BT-55120"},
          reply="Thanks. The return for the jacket on order BT-55120 is set up; use the same label.")],
    [Turn(text="hello", intent="greeting", slots={}, reply="Hello! How can I help you today?"),
     Turn(say="I need to talk to a real person", intent="human_agent", slots={},
          reply="Of course. I'm passing you to a member of our team now.")],
    [Turn(text="This is the third time my delivery is late, terrible service", intent="complaint", slots={},
          reply="I'm very sorry for the repeated delays. I've passed your complaint to our team."),
     Turn(text="order 7731", intent="complaint", slots={"order_id": "7731"},
          reply="Thank you. Your complaint about order 7731 is logged and a manager will contact you.")],
    [Turn(text="what's the status of my order?", photo=("ORDER CONFIRMATION", "Order No: QM-20451", "Blender"),
          intent="order_status", slots={"order_id": "QM-20451", "product": "blender"},
          reply="Your blender on order QM-20451 is on its way and should arrive tomorrow."),
     Turn(text="what was my order number again?", intent="ask_recall",
          slots={"order_id": "QM-20451", "product": "blender"},
          reply="Your order number is QM-20451.")],
    [Turn(text="the vase I got is cracked", intent="damaged_item", slots={"product": "vase"},
          reply="I'm sorry your vase arrived cracked. What is your order number?"),
     Turn(say="it is order six zero three nine", intent="damaged_item", slots={"product": "vase", "order_id": "6039"},
          reply="Thanks. I've logged the cracked vase on order 6039 and will send a replacement.")],
    [Turn(text="Can I get my money back for order 8820?", intent="refund_request", slots={"order_id": "8820"},
          reply="Yes. I've started a refund for order 8820; it takes three to five days."),
     Turn(text="call me on 555-0142 if there's a problem", intent="refund_request",
          slots={"order_id": "8820", "phone": "555-0142"},
          reply="Noted. We'll call 555-0142 if there's any problem with the refund for order 8820.")],
    [Turn(text="my invoice looks wrong", photo=("INVOICE", "Account: sam@example.org", "Amount due: $120.00"),
          intent="billing", slots={"email": "sam@example.org", "amount": "120.00"},
          reply="I see an amount of $120.00 for sam@example.org. I'll have billing check the invoice."),
     Turn(text="thanks, goodbye", intent="goodbye", slots={"email": "sam@example.org", "amount": "120.00"},
          reply="You're welcome. Goodbye!")],
]


def render(turn: Turn, name: str, media: Path, rng: random.Random) -> dict:
    """The turn's media written under `media`; -> its JSONL fields (paths relative to the JSONL)."""
    row: dict = {"text": turn.text}
    if turn.photo:
        page = document(list(turn.photo), dark=turn.dark, size=(720, 80 + 60 * len(turn.photo)))
        if rng.random() < 0.5:
            path = media / f"{name}.png"
            path.write_bytes(encoded(page))
        else:
            path = media / f"{name}.jpg"
            path.write_bytes(encoded(photo_of(page, degrees=rng.uniform(-8, 8)), "JPEG", quality=85))
        row["images"] = [f"media/{path.name}"]
    if turn.say:
        path = media / f"{name}.wav"
        path.write_bytes(speech_wav(turn.say, voice=rng.choice(VOICES), words_per_minute=rng.choice([140, 160])))
        row["audio"] = f"media/{path.name}"
    return row


def write_dataset(out: Path, *, copies: int = 1, seed: int = 0) -> Path:
    rng = random.Random(seed)
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    lines = []
    for copy in range(copies):
        for d, dialogue in enumerate(DIALOGUES, start=1):
            context: list[dict] = []
            for t, turn in enumerate(dialogue, start=1):
                name = f"d{d:02d}-t{t}" + (f"-c{copy}" if copies > 1 else "")
                row = {"id": name, "context": list(context), **render(turn, name, media, rng),
                       "reply": turn.reply, "intent": turn.intent, "slots": turn.slots}
                lines.append(json.dumps(row))
                context += [{"role": "user", "text": " ".join(p for p in (turn.text, turn.say) if p)},
                            {"role": "assistant", "text": turn.reply}]
    path = out / "dialogues.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = write_dataset(args.out, copies=args.copies, seed=args.seed)
    print(f"wrote {path} ({sum(1 for _ in path.open())} turns)")


if __name__ == "__main__":
    main()
