"""Spoken replies: each voice says a reply that the real speech recogniser can read back."""

import io
import wave

import pytest

from models.registry import resolve_placement
from models.speech import load_speech_encoder
from models.tts import MAX_SPOKEN_CHARS, EspeakSynthesizer, load_synthesizer, piper_installed, spoken_text
from tests.samples import heard

REPLY = "Your order 4512 has shipped and arrives on Friday."
KEY_WORDS = ("4512", "shipped", "friday")


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    return load_speech_encoder("default", placement=resolve_placement("cpu"), offline=True,
                               cache_dir=tmp_path_factory.mktemp("models"))


def wav_info(data: bytes) -> tuple[int, int, float]:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnchannels(), wav.getsampwidth(), wav.getnframes() / wav.getframerate()


@pytest.mark.parametrize("choice", ["espeak", "piper"])
def test_spoken_reply_is_understood(whisper, choice):
    if choice == "piper" and not piper_installed():
        pytest.fail("the `tts` extra is not installed: pip install -e '.[tts]'")
    voice = load_synthesizer(choice)
    data = voice.synthesize(REPLY)
    channels, width, seconds = wav_info(data)  # a well-formed WAV, with real sizes in its header
    assert (channels, width) == (1, 2) and 1.5 < seconds < 10
    text = heard(whisper, data)
    assert all(word in text.split() for word in KEY_WORDS), text


def test_text_is_never_an_option_or_a_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = EspeakSynthesizer().synthesize("-w stolen.wav --help")
    assert data.startswith(b"RIFF") and list(tmp_path.iterdir()) == []


def test_spoken_text_is_bounded_at_a_sentence_or_word():
    long = "This is one sentence. " * 40
    cut = spoken_text(long)
    assert len(cut) <= MAX_SPOKEN_CHARS and cut.endswith("sentence.")
    assert spoken_text("Order A7Q-4412 costs $1250, call 415-555-0100 in 2026 about 12 mp3s") == (
        "Order A 7 Q 4 4 1 2 costs $1250, call 4 1 5 5 5 5 0 1 0 0 in 2 0 2 6 about 12 mp3s")
    words = spoken_text("word " * 200, max_chars=23)
    assert words == "word word word word" and spoken_text("  a \n b  ") == "a b"


def test_choice_is_checked():
    assert load_synthesizer("off") is None
    with pytest.raises(ValueError, match="auto, piper, espeak, off"):
        load_synthesizer("festival")
