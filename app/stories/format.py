"""The story format: YAML files of multi-turn conversations with what a good bot does after each turn.

A file holds `stories:` (a list) and optionally `never_say:` (phrases no reply of any story in the file may
contain). A story has a `name`, optional `tags` and `never_say`, and `turns`. Each turn sends any of:

  text: "Where is my order? The order number is 4512."
  image: {file: photos/receipt.jpg}                        # relative to the YAML file
  image: {kind: receipt, lines: ["ORDER A7Q-4412", "TOTAL $37.50"], dark: true, rotate: 6, format: jpeg}
  images: [ ... ]                                          # several images in one turn
  audio: {file: clips/order.wav}
  audio: {say: "my order number is four five one two", voice: en-us, speed: 150}

and states what should hold after it:

  intent: order_status          # state.intent; omitted -> the previous turn's expectation carries over
                                # (intents persist in the state); `intent: null` expects no intent
  slots: {order_id: "4512"}     # changes to the expected slots; earlier turns' slots carry over and
                                # `slot: null` expects it gone. After every turn the state's slots must
                                # equal the accumulated expectation (the joint goal)
  must_say: ["4512", [order number, order id]]   # each entry must appear in the reply (case-insensitive);
                                                 # a list entry is satisfied by any one of its phrases
  never_say: ["I'm unable"]     # none may appear in this reply

Image specs (app/stories/media.py): kind receipt | shipping_label | error_screen | document, lines, dark,
rotate (degrees), format png | jpeg. Audio specs: say, voice (an espeak-ng voice), speed (words per minute).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

IMAGE_KINDS = ("receipt", "shipping_label", "error_screen", "document")
IMAGE_FORMATS = ("png", "jpeg")
TURN_KEYS = {"text", "image", "images", "audio", "intent", "slots", "must_say", "never_say"}
STORY_KEYS = {"name", "tags", "never_say", "turns"}
FILE_KEYS = {"stories", "never_say"}
_UNSET = object()  # `intent` absent (carry the previous expectation) as opposed to `intent: null`


class StoryError(ValueError):
    """A story file that does not follow the format; the message names the file, story and turn."""


@dataclass(frozen=True)
class ImageSpec:
    file: Path | None = None
    kind: str = "document"
    lines: tuple[str, ...] = ()
    dark: bool = False
    rotate: float = 0.0
    format: str = "png"


@dataclass(frozen=True)
class AudioSpec:
    file: Path | None = None
    say: str = ""
    voice: str = "en-us"
    speed: int = 150  # words per minute


@dataclass(frozen=True)
class Turn:
    text: str = ""
    images: tuple[ImageSpec, ...] = ()
    audio: AudioSpec | None = None
    intent: str | None = None  # expected state.intent after the turn (carried over already)
    check_intent: bool = False  # False while no turn of the story has stated an intent yet
    slots: dict[str, str] = field(default_factory=dict)  # the whole expected slot set after the turn
    must_say: tuple[tuple[str, ...], ...] = ()  # each inner tuple: phrases of which one must appear
    never_say: tuple[str, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        present = {"text": bool(self.text), "image": bool(self.images), "audio": self.audio is not None}
        return tuple(name for name, here in present.items() if here)


@dataclass(frozen=True)
class Story:
    name: str
    source: str  # file name, for reports
    turns: tuple[Turn, ...]
    tags: tuple[str, ...] = ()
    never_say: tuple[str, ...] = ()  # no reply of the story may contain these (story's own plus its file's)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in ("text", "image", "audio") if any(m in t.modalities for t in self.turns))


def load_stories(paths: list[Path]) -> list[Story]:
    """Every story in `paths` (files, or directories whose *.yaml files are read in name order)."""
    files = [f for p in paths for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
    if not files:
        raise StoryError(f"no story files in {', '.join(map(str, paths))}")
    stories = [story for f in files for story in load_file(f)]
    names = [s.name for s in stories]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StoryError(f"story names must be unique: {', '.join(duplicates)}")
    return stories


def load_file(path: Path) -> list[Story]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise StoryError(f"{path}: {error}") from error
    where = str(path)
    _require(isinstance(document, dict) and isinstance(document.get("stories"), list), where,
             "needs a `stories:` list")
    _known_keys(document, FILE_KEYS, where)
    shared = _phrases(document.get("never_say", []), where, "never_say")
    return [_story(raw, path, shared) for raw in document["stories"]]


def _story(raw: Any, path: Path, shared: tuple[str, ...]) -> Story:
    _require(isinstance(raw, dict) and isinstance(raw.get("name"), str), str(path), "each story needs a `name`")
    where = f"{path}: story {raw['name']!r}"
    _known_keys(raw, STORY_KEYS, where)
    _require(isinstance(raw.get("turns"), list) and raw["turns"], where, "needs a non-empty `turns` list")
    turns: list[Turn] = []
    intent: Any = _UNSET
    slots: dict[str, str] = {}
    for number, turn in enumerate(raw["turns"], start=1):
        parsed, intent, slots = _turn(turn, path.parent, intent, slots, f"{where}, turn {number}")
        turns.append(parsed)
    tags = raw.get("tags", [])
    _require(isinstance(tags, list) and all(isinstance(t, str) for t in tags), where, "`tags` is a list of words")
    return Story(name=raw["name"], source=path.name, turns=tuple(turns), tags=tuple(tags),
                 never_say=shared + _phrases(raw.get("never_say", []), where, "never_say"))


def _turn(raw: Any, base: Path, intent: Any, slots: dict[str, str], where: str) -> tuple[Turn, Any, dict]:
    """The turn, and the expected intent and slots it leaves for the next turn to carry over."""
    _require(isinstance(raw, dict), where, "a turn is a mapping")
    _known_keys(raw, TURN_KEYS, where)
    text = raw.get("text", "")
    _require(isinstance(text, str), where, "`text` is a string")
    _require(not ("image" in raw and "images" in raw), where, "use `image` or `images`, not both")
    images = raw.get("images", [raw["image"]] if "image" in raw else [])
    _require(isinstance(images, list), where, "`images` is a list")
    audio = _audio(raw["audio"], base, where) if "audio" in raw else None
    _require(bool(text.strip() or images or audio), where, "a turn sends text, an image or audio")
    if "intent" in raw:
        intent = raw["intent"]
        _require(intent is None or isinstance(intent, str), where, "`intent` is a name or null")
    changes = raw.get("slots", {})
    _require(isinstance(changes, dict), where, "`slots` is a mapping of slot name to value (or null)")
    slots = dict(slots)
    for name, value in changes.items():
        if value is None:
            slots.pop(name, None)
        else:
            slots[name] = str(value)  # YAML reads 4512 as a number; quote values such as "0x80070005"
    must = raw.get("must_say", [])
    _require(isinstance(must, list), where, "`must_say` is a list")
    turn = Turn(
        text=text, images=tuple(_image(i, base, where) for i in images), audio=audio,
        intent=None if intent is _UNSET else intent, check_intent=intent is not _UNSET, slots=slots,
        must_say=tuple(_phrases(m if isinstance(m, list) else [m], where, "must_say") for m in must),
        never_say=_phrases(raw.get("never_say", []), where, "never_say"),
    )
    return turn, intent, slots


def _image(raw: Any, base: Path, where: str) -> ImageSpec:
    _require(isinstance(raw, dict), where, "an image is {file: ...} or a spec {kind, lines, ...}")
    _known_keys(raw, {"file", "kind", "lines", "dark", "rotate", "format"}, where)
    if "file" in raw:
        return ImageSpec(file=_existing(base / str(raw["file"]), where))
    spec = ImageSpec(kind=raw.get("kind", "document"), lines=tuple(str(line) for line in raw.get("lines", [])),
                     dark=bool(raw.get("dark", False)), rotate=float(raw.get("rotate", 0)),
                     format=str(raw.get("format", "png")).lower())
    _require(spec.kind in IMAGE_KINDS, where, f"image kind is one of {', '.join(IMAGE_KINDS)}")
    _require(spec.format in IMAGE_FORMATS, where, f"image format is one of {', '.join(IMAGE_FORMATS)}")
    _require(bool(spec.lines), where, "a rendered image needs `lines` of text")
    return spec


def _audio(raw: Any, base: Path, where: str) -> AudioSpec:
    _require(isinstance(raw, dict), where, "audio is {file: ...} or {say: ..., voice: ..., speed: ...}")
    _known_keys(raw, {"file", "say", "voice", "speed"}, where)
    if "file" in raw:
        return AudioSpec(file=_existing(base / str(raw["file"]), where))
    _require(isinstance(raw.get("say"), str) and raw["say"].strip(), where, "audio needs `say` text or a `file`")
    speed = raw.get("speed", AudioSpec.speed)
    _require(isinstance(speed, int) and 80 <= speed <= 450, where, "`speed` is words per minute, 80..450")
    return AudioSpec(say=raw["say"], voice=str(raw.get("voice", AudioSpec.voice)), speed=speed)


def _phrases(raw: Any, where: str, key: str) -> tuple[str, ...]:
    _require(isinstance(raw, list) and all(isinstance(p, str) and p.strip() for p in raw), where,
             f"`{key}` is a list of non-empty phrases")
    return tuple(raw)


def _existing(path: Path, where: str) -> Path:
    _require(path.is_file(), where, f"no such file: {path}")
    return path


def _known_keys(raw: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    _require(not unknown, where, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise StoryError(f"{where}: {message}")
