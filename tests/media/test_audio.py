import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from app.errors import ParleyError
from app.media.audio import decode_audio
from tests.factories import wav_header
from tests.samples import speech_wav

LIMITS = {"max_seconds": 30.0, "max_bytes": 2_000_000}
RATE = 16000


@pytest.fixture(scope="module")
def espeak() -> bytes:
    """espeak-ng's own output (its default voice and speed): 22.05 kHz mono, speech from the very first samples."""
    return speech_wav("my order number is four five one two", voice=None, words_per_minute=None)


def sine(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encoded(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def refused(data: bytes, **limits) -> ParleyError:
    with pytest.raises(ParleyError) as info:
        decode_audio(data, **{**LIMITS, **limits})
    return info.value


def test_espeak_22050_is_resampled_to_16k(espeak):
    info = sf.info(io.BytesIO(espeak))
    assert info.samplerate == 22050
    out = decode_audio(espeak, **LIMITS)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == int(np.ceil(info.frames * 16000 / 22050))
    assert np.abs(out).max() <= 1.0 and np.abs(out).max() > 0.1


def test_resampling_keeps_the_signal_and_its_first_samples():
    # A 1 kHz tone at 22.05 kHz must come out as the same tone at 16 kHz, from the first 10 ms on:
    # a resampler that loses or smears the start is what once cost whisper the first word.
    tone = sine(1000, 1.0, 22050)
    out = decode_audio(encoded(tone, 22050, "WAV", "FLOAT"), **LIMITS)
    expected = sine(1000, 1.0, RATE)
    assert len(out) == len(expected)
    inner = slice(160, len(out) - 160)  # the filter's edge transient is under 10 ms
    np.testing.assert_allclose(out[inner], expected[inner], atol=0.01)
    assert np.abs(out[:160]).max() > 0.3  # the first 10 ms is there, not faded out


def test_upsampling_8k_telephone_audio():
    out = decode_audio(encoded(sine(300, 2.0, 8000), 8000, "WAV"), **LIMITS)
    assert len(out) == 2 * RATE


def test_stereo_is_downmixed_to_mono():
    left = sine(440, 0.5, RATE)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)  # (N, 2)
    out = decode_audio(encoded(stereo, RATE, "WAV", "FLOAT"), **LIMITS)
    assert out.shape == (len(left),)
    np.testing.assert_allclose(out, left / 2, atol=1e-6)


def test_flac_round_trip_is_exact_to_16_bits():
    tone = sine(440, 1.0, RATE)
    out = decode_audio(encoded(tone, RATE, "FLAC", "PCM_16"), **LIMITS)
    np.testing.assert_allclose(out, tone, atol=1 / 32768 + 1e-6)


@pytest.mark.parametrize("fmt,subtype", [
    ("OGG", "VORBIS"),
    pytest.param("MP3", "MPEG_LAYER_III", marks=pytest.mark.skipif(
        "MP3" not in sf.available_formats(), reason="this libsndfile has no MP3 support")),
])
def test_lossy_round_trip_keeps_the_tone(fmt, subtype):
    tone = sine(440, 1.0, 44100)
    out = decode_audio(encoded(tone, 44100, fmt, subtype), **LIMITS)
    assert abs(len(out) - RATE) <= 0.05 * RATE  # encoder padding/priming may add a few ms
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * RATE / len(out) - 440) < 5  # still a 440 Hz tone
    assert 0.3 < np.abs(out).max() <= 1.0


def test_silence_is_valid_audio():
    out = decode_audio(encoded(np.zeros(RATE, np.float32), RATE, "WAV"), **LIMITS)
    assert out.shape == (RATE,) and not out.any()


def test_float_wav_is_clipped_to_unit_range():
    loud = np.full(1000, 3.0, np.float32)
    loud[::2] = np.nan
    out = decode_audio(encoded(loud, RATE, "WAV", "FLOAT"), **LIMITS)
    assert np.isfinite(out).all() and out.max() == 1.0


@pytest.mark.parametrize("data,code", [
    (b"", "empty_audio"),
    (wav_header(0), "empty_audio"),
    (np.random.default_rng(0).bytes(5000), "undecodable_audio"),
    (b"RIFF\x00\x00", "undecodable_audio"),
])
def test_empty_and_garbage_are_422(data, code):
    err = refused(data)
    assert (err.kind, err.code) == ("invalid", code)


def test_png_bytes_are_not_audio():
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buffer, format="PNG")
    err = refused(buffer.getvalue())
    assert (err.kind, err.code) == ("invalid", "undecodable_audio")
    assert "WAV" in err.message and "FLAC" in err.message  # says what does work


def test_truncated_wav_is_undecodable(espeak):
    err = refused(espeak[: len(espeak) // 2])
    assert (err.kind, err.code) == ("invalid", "undecodable_audio")
    assert "truncated" in err.message


def test_wav_claiming_ten_hours_is_refused_from_its_header():
    data = wav_header(10 * 3600 * RATE, data=b"\x00" * 2000)  # declares 1.15 GB of samples, carries 2 kB
    tracemalloc.start()
    try:
        err = refused(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (err.kind, err.code) == ("too_large", "audio_too_long")
    assert "36000" in err.message
    assert peak < 1_000_000  # refused from the header: the 1.15 GB it declares was never allocated


def test_real_audio_over_max_seconds_is_413(espeak):
    err = refused(espeak, max_seconds=1.0)
    assert (err.kind, err.code) == ("too_large", "audio_too_long")


def test_over_max_bytes_is_413(espeak):
    err = refused(espeak, max_bytes=len(espeak) - 1)
    assert (err.kind, err.code) == ("too_large", "audio_too_large")
    assert decode_audio(espeak, max_seconds=30, max_bytes=len(espeak)).size > 0


@pytest.mark.slow
def test_resampled_espeak_keeps_its_first_word(espeak, tmp_path):
    from models.registry import resolve_placement
    from models.speech import load_speech_encoder

    encoder = load_speech_encoder("default", placement=resolve_placement("cpu"), offline=True, cache_dir=tmp_path)
    [transcript] = encoder.predict_batch([decode_audio(espeak, **LIMITS)])
    words = transcript.text.lower().split()
    assert words[:3] == ["my", "order", "number"], transcript.text
