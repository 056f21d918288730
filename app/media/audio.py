"""Audio of a voice turn: bytes in any common container -> float32 mono samples at the model's rate.

Pure functions, no model imports. Lengths are checked from the header before
anything is decoded, so a file that claims hours of audio costs nothing.
"""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from app.errors import ParleyError

SAMPLE_RATE = 16000  # Whisper's rate: 160 samples per 10 ms mel hop
WAV_UNKNOWN_SIZE = 0xFFFFFFFF  # streaming writers put this in the data chunk when they cannot seek back
_MP3 = "MP3" in sf.available_formats()  # libsndfile >= 1.1 built with mpg123/lame
FORMATS = "WAV, FLAC, OGG/Vorbis" + (" or MP3" if _MP3 else "")  # what this libsndfile really decodes


def decode_audio(data: bytes, *, max_seconds: float, max_bytes: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Audio file bytes -> float32 mono samples in [-1, 1] at `sample_rate`, shape (N,).

    Raises ParleyError: too_large (audio_too_large, audio_too_long), invalid (empty_audio, undecodable_audio).
    Silence is valid audio.
    """
    if not data:
        raise ParleyError("invalid", "empty_audio", "the audio is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ParleyError("too_large", "audio_too_large", f"the audio is {len(data)} bytes; the limit is {max_bytes}")
    declared_frames = _wav_declared_frames(data)  # None unless a RIFF/WAVE header says how long it is
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, channels = f.samplerate, f.channels
            # libsndfile clamps a WAV's frame count to the bytes present; the header's own claim is checked too.
            frames = f.frames if declared_frames is None else max(f.frames, declared_frames)
            if frames <= 0:
                raise ParleyError("invalid", "empty_audio", "the audio holds no samples (zero length)")
            _check_duration(frames / rate, max_seconds)
            if declared_frames is not None and f.frames < declared_frames:
                raise _undecodable(f"truncated: the header declares {declared_frames} frames, {f.frames} are present")
            samples = f.read(dtype="float32", always_2d=True)  # (frames, channels)
    except sf.SoundFileError as exc:  # LibsndfileError and friends: not audio, corrupt, unsupported codec
        raise _undecodable(str(exc).split(": ", 1)[-1]) from exc
    if samples.shape[0] < frames:
        raise _undecodable(f"truncated: {samples.shape[0]} of {frames} frames could be read")
    mono = samples.mean(axis=1) if channels > 1 else samples[:, 0]  # (frames,)
    mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)  # float WAVs can carry anything
    if rate != sample_rate:
        mono = _resample(mono, rate, sample_rate)
    return np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False)


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling with scipy's Kaiser-windowed FIR (anti-aliased, no edge loss).

    22050 -> 16000 is up 320, down 441 after dividing by gcd 50. Output length is
    ceil(len(x) * target / rate).
    """
    g = math.gcd(rate, target)
    return resample_poly(x, target // g, rate // g).astype(np.float32)


def _check_duration(seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds:
        raise ParleyError("too_large", "audio_too_long",
                          f"the audio is {seconds:.1f} s long; the limit is {max_seconds:g} s")


def _undecodable(why: str) -> ParleyError:
    return ParleyError("invalid", "undecodable_audio", f"could not decode the audio ({why}); send {FORMATS}")


def _wav_declared_frames(data: bytes) -> int | None:
    """Frames a RIFF/WAVE header declares in its data chunk; None for other formats or unknown sizes.

    Walks the chunks up to "data" reading only headers: (id 4 bytes, little-endian size 4 bytes, body, pad to even).
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    block_align, pos = 0, 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"fmt " and pos + 8 + 14 <= len(data):
            block_align = struct.unpack_from("<H", data, pos + 8 + 12)[0]  # bytes per frame, all channels
        if chunk == b"data":
            if block_align <= 0 or size == WAV_UNKNOWN_SIZE:
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None
