"""Loading story files: expectations carried across turns, media specs, and clear errors for bad files."""

import io
import wave
from pathlib import Path

import pytest
from PIL import Image

from app.stories.format import AudioSpec, ImageSpec, StoryError, load_file, load_stories
from app.stories.media import MediaCache, render_image, synthesize
from tests.readme import readme_block

STORIES_DIR = Path(__file__).resolve().parent.parent / "stories"


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_intent_and_slots_carry_over_until_changed(tmp_path):
    (tmp_path / "clip.wav").write_bytes(b"RIFF")
    [story] = load_file(write(tmp_path, """
never_say: [unable]
stories:
  - name: carry
    never_say: [sorry]
    turns:
      - text: hi
      - text: where is my order
        intent: order_status
        must_say: ["4512", [order number, order id]]
      - text: "4512"
        slots: {order_id: 4512, issue: late}
      - audio: {file: clip.wav}
        intent: null
        slots: {issue: null}
"""))
    first, second, third, fourth = story.turns
    assert not first.check_intent  # no intent stated yet: not scored
    assert second.check_intent and second.intent == "order_status"
    assert second.must_say == (("4512",), ("order number", "order id"))
    assert third.intent == "order_status" and third.slots == {"order_id": "4512", "issue": "late"}
    assert fourth.check_intent and fourth.intent is None and fourth.slots == {"order_id": "4512"}
    assert fourth.audio == AudioSpec(file=tmp_path / "clip.wav") and fourth.modalities == ("audio",)
    assert story.never_say == ("unable", "sorry") and story.modalities == ("text", "audio")


def test_the_readme_example_loads_as_documented(tmp_path):
    [story] = load_file(write(tmp_path, readme_block("story-example")))
    first, photo, goodbye = story.turns
    assert photo.slots == {"product": "lamp", "issue": "damaged", "order_id": "A7Q-4412", "amount": "$37.50"}
    assert photo.intent == "damaged_item" and goodbye.intent == "goodbye"
    assert photo.images[0] == ImageSpec(kind="receipt", lines=("Order A7Q-4412", "Total $37.50"), dark=True,
                                        rotate=5, format="jpeg")
    assert goodbye.audio == AudioSpec(say="thanks, that's all", voice="en-gb", speed=150)
    assert first.never_say == ("logged a damage report",) and story.never_say == ("I'm unable",)


@pytest.mark.parametrize(("body", "message"), [
    ("stories: []\nnever_say: [x]\nextra: 1", "unknown key(s) extra"),
    ("stories:\n  - name: a\n    turns: []", "non-empty `turns`"),
    ("stories:\n  - name: a\n    turns:\n      - intent: greeting", "sends text, an image or audio"),
    ("stories:\n  - name: a\n    turns:\n      - image: {file: nope.png}", "no such file"),
    ("stories:\n  - name: a\n    turns:\n      - image: {kind: poster, lines: [x]}", "image kind is one of"),
    ("stories:\n  - name: a\n    turns:\n      - image: {kind: receipt}", "needs `lines`"),
    ("stories:\n  - name: a\n    turns:\n      - audio: {say: hi, speed: 9}", "words per minute"),
    ("stories:\n  - name: a\n    turns:\n      - {text: hi, must_say: hi}", "`must_say` is a list"),
    ("stories:\n  - name: a\n    turns:\n      - {text: hi, slot: {}}", "unknown key(s) slot"),
])
def test_bad_story_files_name_the_problem(tmp_path, body, message):
    with pytest.raises(StoryError, match=r"s\.yaml") as raised:
        load_file(write(tmp_path, body))
    assert message in str(raised.value)


def test_story_names_are_unique_across_files(tmp_path):
    story = "stories:\n  - name: same\n    turns:\n      - text: hi\n"
    with pytest.raises(StoryError, match="unique: same"):
        load_stories([write(tmp_path, story, "a.yaml"), write(tmp_path, story, "b.yaml")])


def test_the_shipped_stories_load_and_cover_every_intent_and_modality():
    from app.dialogue.domain import load_domain

    stories = load_stories([STORIES_DIR])
    assert len(stories) >= 60
    named = {t.intent for s in stories for t in s.turns if t.check_intent} | {tag for s in stories for tag in s.tags}
    assert set(load_domain().intents) - {"inform"} <= named  # inform: every story gives details
    assert {m for s in stories for m in s.modalities} == {"text", "image", "audio"}


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_image_specs_render_tilted_documents(fmt):
    spec = ImageSpec(kind="receipt", lines=("Order A7Q-4412", "Total $37.50"), dark=True, rotate=6, format=fmt)
    image = Image.open(io.BytesIO(render_image(spec)))
    assert image.format == fmt.upper()
    assert image.width > 400 and image.height > 200
    assert render_image(spec) == render_image(spec)  # the same photo every run


def test_audio_specs_are_spoken_once_per_spec():
    cache = MediaCache()
    spec = AudioSpec(say="order four five one two", voice="en-gb", speed=140)
    name, wav = cache.audio(spec)
    with wave.open(io.BytesIO(wav)) as clip:
        assert name == "speech.wav" and clip.getnframes() / clip.getframerate() > 0.8
    assert cache.audio(spec)[1] is wav
    slower = synthesize(AudioSpec(say="order four five one two", voice="en-gb", speed=100))
    assert len(slower) > len(wav)
