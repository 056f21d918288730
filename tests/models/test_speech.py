import math
import re
import time

import numpy as np
import pytest
import torch

from app.media.audio import decode_audio
from models.registry import WHISPER_BASE_PARTS, default_speech_model, package_dir, resolve_placement
from models.speech import FasterWhisperEncoder, Transcript, TransformersSpeechEncoder, load_speech_encoder
from tests.factories import tiny_wav2vec2_ctc, tiny_whisper
from tests.samples import speech_wav

CPU = resolve_placement("cpu")
LIMITS = {"max_seconds": 60.0, "max_bytes": 10_000_000}
ORDER = "my order number is four five one two"
REFUND = "I want a refund for my headphones"
VOICES = {  # "default": espeak-ng's own voice and speed
    "default": {"voice": None, "words_per_minute": None},
    "en-us+f3 slow": {"voice": "en-us+f3", "words_per_minute": 140},
}


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level Levenshtein distance (substitutions + deletions + insertions) / reference words."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))  # distance from ref[:0] to each prefix of hyp
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))


def test_wer_helper():
    assert wer("a b c d", "a b c d") == 0
    assert wer("a b c d", "A, b; x d.") == 0.25
    assert wer("a b c d", "a c d") == 0.25
    assert wer("a b", "a b c d") == 1.0


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def clips() -> dict[tuple[str, str], np.ndarray]:
    """(phrase, voice) -> 16 kHz samples, synthesised with espeak-ng and decoded like a voice turn."""
    return {(phrase, voice): decode_audio(speech_wav(phrase, **options), **LIMITS)
            for phrase in (ORDER, REFUND) for voice, options in VOICES.items()}


@pytest.fixture(scope="module")
def whisper(cache_dir):
    return load_speech_encoder("default", placement=CPU, offline=True, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def transcripts(whisper, clips) -> dict[tuple[str, str], Transcript]:
    return dict(zip(clips, whisper.predict_batch(list(clips.values())), strict=True))


def test_default_model_is_joined_once_byte_for_byte(cache_dir):
    folder = default_speech_model(cache_dir)
    parts = [package_dir(module) / name for module, name in WHISPER_BASE_PARTS]
    joined = (folder / "model.bin").read_bytes()
    assert joined == b"".join(part.read_bytes() for part in parts)
    assert {p.name for p in folder.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.json"}
    assert not list(cache_dir.glob("*.partial*"))
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert default_speech_model(cache_dir) == folder and (folder / "model.bin").stat().st_mtime_ns == mtime


@pytest.mark.slow
@pytest.mark.parametrize("voice", VOICES)
def test_order_number_digits(transcripts, voice):
    text = transcripts[ORDER, voice].text
    assert "4512" in text.replace(" ", "") or "four five one two" in text.lower(), text
    assert words(text)[0] == "my", text  # the first word survives (see LEAD_IN_SAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("voice", VOICES)
def test_refund_request_wer(transcripts, voice):
    text = transcripts[REFUND, voice].text
    assert wer(REFUND, text) <= 0.25, text
    assert "refund" in words(text), text


@pytest.mark.slow
def test_transcript_fields(whisper, transcripts, clips):
    assert isinstance(whisper, FasterWhisperEncoder) and whisper.feature_dim == 512
    for key, transcript in transcripts.items():
        assert transcript.duration_s == pytest.approx(len(clips[key]) / 16000)
        assert 0.5 < transcript.confidence <= 1.0  # clear synthetic speech
        assert 0 < transcript.seconds < 10
        assert transcript.features is None  # only when asked for


@pytest.mark.slow
def test_batch_matches_one_at_a_time(whisper, transcripts, clips):
    key = (REFUND, "default")
    [alone] = whisper.predict_batch([clips[key]])
    assert alone.text == transcripts[key].text
    assert alone.confidence == pytest.approx(transcripts[key].confidence, abs=1e-3)


@pytest.mark.slow
def test_encoder_features_cover_the_clip(whisper, clips):
    clip = clips[ORDER, "default"]
    [transcript] = whisper.predict_batch([clip], with_features=True)
    assert transcript.features.shape == (math.ceil(len(clip) / 320), 512)
    assert transcript.features.dtype == np.float32 and np.isfinite(transcript.features).all()
    assert transcript.features.std() > 0.1


@pytest.mark.slow
def test_silence_gives_no_words(whisper):
    [quiet] = whisper.predict_batch([np.zeros(2 * 16000, np.float32)])
    assert quiet.text == "" and quiet.duration_s == 2.0


@pytest.mark.slow
def test_clip_over_30_s_is_transcribed_whole(whisper, clips):
    pause = np.zeros(14 * 16000, np.float32)
    clip = np.concatenate([clips[ORDER, "default"], pause, pause, clips[REFUND, "default"]])  # ~33 s
    [transcript] = whisper.predict_batch([clip], with_features=True)
    assert "4512" in transcript.text and "refund" in transcript.text.lower(), transcript.text
    assert transcript.features.shape == (math.ceil(len(clip) / 320), 512)


def test_empty_batch(whisper):
    assert whisper.predict_batch([]) == []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, cache_dir):
    folder = tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))
    return load_speech_encoder(str(folder), placement=CPU, offline=True, cache_dir=cache_dir)


def test_tiny_hf_whisper_loads_through_transformers(tiny):
    assert isinstance(tiny, TransformersSpeechEncoder) and tiny.feature_dim == 32 and tiny.seq2seq
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(16000).astype(np.float32), np.zeros(8000, np.float32)]
    out = tiny.predict_batch(clips, with_features=True)
    assert len(out) == 2
    for clip, transcript in zip(clips, out, strict=True):
        assert isinstance(transcript.text, str)
        assert 0.0 <= transcript.confidence <= 1.0
        assert transcript.features.shape == (math.ceil(len(clip) / 320), 32)
        assert transcript.duration_s == len(clip) / 16000
    assert tiny.predict_batch(clips)[0].features is None


def test_tiny_hf_whisper_windows_long_clips(tiny):
    clip = np.zeros(31 * 16000, np.float32)  # two 30 s windows
    [transcript] = tiny.predict_batch([clip], with_features=True)
    assert transcript.features.shape == (31 * 50, 32)


def test_unknown_hub_id_offline_says_so(cache_dir):
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="offline"):
        load_speech_encoder("no-such-org/no-such-speech-model", placement=CPU, offline=True, cache_dir=cache_dir)
    assert time.perf_counter() - started < 10


def test_tiny_wav2vec2_ctc_loads_through_transformers(tmp_path, cache_dir):
    encoder = load_speech_encoder(str(tiny_wav2vec2_ctc(tmp_path / "ctc")), placement=CPU, offline=True,
                                  cache_dir=cache_dir)
    assert isinstance(encoder, TransformersSpeechEncoder) and not encoder.seq2seq and encoder.feature_dim == 32
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(16000).astype(np.float32), np.zeros(4000, np.float32)]
    long, short = encoder.predict_batch(clips, with_features=True)
    [blip] = encoder.predict_batch([np.zeros(3, np.float32)], with_features=True)  # shorter than one conv window
    assert blip.features.shape[0] >= 1 and blip.duration_s == 3 / 16000
    for transcript in (long, short):
        assert isinstance(transcript.text, str) and 0.0 <= transcript.confidence <= 1.0
        assert transcript.features.ndim == 2 and transcript.features.shape[1] == 32
    # Each clip gets its own frame count (conv strides 5 x 4 here: one state per 20 samples), not the padded batch's.
    frames = [int(encoder.model._get_feat_extract_output_lengths(torch.tensor(len(c)))) for c in clips]
    assert [long.features.shape[0], short.features.shape[0]] == frames and frames[0] > 3 * frames[1]
