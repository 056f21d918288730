"""Fusion learns: answers that are only in the image or only in the audio.

Two tasks share one tiny FusedSeq2Seq, trained on CPU by models/train.py's own loop:
- "what colour is the shape?": the colour of a disc or square drawn at a random place on a noisy
  background, seen through the built-in pixel-patch featuriser (models/vision.py PatchFeatures);
- "which digit did I say?": a digit spoken by espeak-ng at one of several speeds and pitches, seen as
  Whisper log-mel frames (80-d). Whisper base's encoder states would take ~40 s for these clips on two
  cores and the model treats any (T, Da) features alike, so the test uses the encoder's input features.
The text is the same for every example of a task, so only the media can carry the answer. Held-out
examples use new shape places and sizes, and speeds/pitches between the trained ones.
Then the same model, with the media features zeroed, must fall back to one guess (chance).
"""

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image, ImageDraw
from scipy.signal import resample_poly

from models.fused import FusedSeq2Seq, encode_context
from models.train import Item, TrainOptions, encode_reply, generate_replies, new_config, train
from models.vision import PatchFeatures
from tests.factories import tiny_tokenizer
from tests.samples import speech_wav

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (235, 210, 40),
           "purple": (140, 50, 170), "orange": (240, 130, 30)}
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COLOUR_QUESTION = "user: what colour is the shape in my photo?"
DIGIT_QUESTION = "user: which digit did I just say?"
TRAIN_VOICES = [(wpm, pitch) for wpm in (130, 175) for pitch in (25, 50, 75)]
HELD_OUT_VOICES = [(150, 40), (160, 60)]


def shape_image(colour: str, rng: np.random.Generator) -> Image.Image:
    """A disc or square of `colour`, random size and place, on grey-ish noise (256 x 256)."""
    background = rng.integers(90, 170, (256, 256, 3), dtype=np.uint8)
    image = Image.fromarray(background)
    size = int(rng.integers(60, 120))
    x, y = (int(v) for v in rng.integers(0, 256 - size, 2))
    draw = ImageDraw.Draw(image)
    box = (x, y, x + size, y + size)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=COLOURS[colour])
    return image


def log_mel(wav: bytes) -> np.ndarray:
    """espeak WAV bytes -> (T, 80) Whisper log-mel frames (10 ms each)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    clip = resample_poly(samples, 160, 441).astype(np.float32)  # 22.05 kHz -> 16 kHz
    return FeatureExtractor()(clip).T.astype(np.float32)  # (T, 80)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def config(tokenizer):
    return new_config(tokenizer, d_model=64, n_heads=4, ffn_dim=128, text_layers=1, decoder_layers=2,
                      dropout=0.1, image_dim=PatchFeatures.feature_dim, audio_dim=80, audio_stride=4,
                      max_memory_positions=128, image_features="patches", audio_features="log-mel")


def colour_items(tokenizer, config, *, per_colour: int, seed: int) -> list[Item]:
    rng = np.random.default_rng(seed)
    featuriser = PatchFeatures()
    names = [c for c in COLOURS for _ in range(per_colour)]
    features = featuriser.predict_batch([shape_image(c, rng) for c in names])
    question = encode_context(tokenizer, COLOUR_QUESTION, config)
    return [Item(input_ids=question, labels=encode_reply(tokenizer, c, config), image=f, reply=c)
            for c, f in zip(names, features, strict=True)]


def digit_items(tokenizer, config, voices: list[tuple[int, int]]) -> list[Item]:
    return [Item(input_ids=encode_context(tokenizer, DIGIT_QUESTION, config), labels=encode_reply(tokenizer, d, config),
                 audio=log_mel(speech_wav(d, words_per_minute=wpm, pitch=pitch)), reply=d)
            for d in DIGITS for wpm, pitch in voices]


def accuracy(model, items, tokenizer) -> float:
    replies = []
    for start in range(0, len(items), 32):
        replies += generate_replies(model, items[start:start + 32], tokenizer, max_new_tokens=6)
    return float(np.mean([r == i.reply for r, i in zip(replies, items, strict=True)]))


def zeroed(items: list[Item]) -> list[Item]:
    """The same examples with every image and audio feature set to zero (masks unchanged)."""
    return [Item(input_ids=i.input_ids, labels=i.labels, reply=i.reply,
                 image=None if i.image is None else np.zeros_like(i.image),
                 audio=None if i.audio is None else np.zeros_like(i.audio)) for i in items]


def test_fused_model_reads_the_answer_from_image_and_audio(tokenizer, config):
    torch.manual_seed(0)
    train_items = colour_items(tokenizer, config, per_colour=16, seed=1) + digit_items(tokenizer, config, TRAIN_VOICES)
    colour_test = colour_items(tokenizer, config, per_colour=6, seed=2)
    digit_test = digit_items(tokenizer, config, HELD_OUT_VOICES)
    model = FusedSeq2Seq(config)
    history = train(model, train_items, options=TrainOptions(epochs=40, batch_size=16, lr=2e-3, warmup_steps=10,
                                                              progress=False, seed=0))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    model.eval()
    colour_acc, digit_acc = accuracy(model, colour_test, tokenizer), accuracy(model, digit_test, tokenizer)
    colour_blind = accuracy(model, zeroed(colour_test), tokenizer)
    digit_deaf = accuracy(model, zeroed(digit_test), tokenizer)
    print(f"colour {colour_acc:.2f} (zeroed {colour_blind:.2f}, chance {1 / len(COLOURS):.2f}); "
          f"digit {digit_acc:.2f} (zeroed {digit_deaf:.2f}, chance {1 / len(DIGITS):.2f})")
    assert colour_acc >= 0.8, colour_acc
    assert digit_acc >= 0.7, digit_acc
    assert colour_blind <= 0.35, colour_blind  # chance 0.17: without the image it can only guess
    assert digit_deaf <= 0.25, digit_deaf  # chance 0.10
