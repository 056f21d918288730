"""SpeechEncoder: 16 kHz mono clips -> English transcripts (+ encoder states), Whisper base by default.

Two back ends behind one interface:
- FasterWhisperEncoder: a CTranslate2 Whisper folder (the packaged default), int8 on CPU, float16 on CUDA.
  Clips up to 30 s are batched through one encoder pass and one `generate` call; longer clips, and clips
  whose fast decode looks like a repetition loop, go through faster-whisper's own `transcribe`.
- TransformersSpeechEncoder: a hub id or local HF checkpoint, Whisper-style seq2seq or wav2vec2-style CTC.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from models.registry import DEFAULT, Placement, default_speech_model, load_pretrained

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # what every Whisper and wav2vec2 checkpoint was trained on
WINDOW_SECONDS = 30  # Whisper sees 30 s at a time
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE  # 480000 samples
SAMPLES_PER_STATE = 320  # 10 ms mel hop (160 samples) x encoder conv stride 2 -> 20 ms per encoder state
# Whisper base drops the first word of speech that starts at sample 0 (espeak's "my order number is..."
# came out "Order number is 4512."); 0.24 s of silence in front fixed it on every clip we tried.
LEAD_IN_SAMPLES = 3840  # 0.24 s = 12 encoder states, cut off the features again
LEAD_IN_STATES = LEAD_IN_SAMPLES // SAMPLES_PER_STATE  # 12
CTC_MIN_SAMPLES = 400  # 25 ms: wav2vec2's conv feature encoder yields its first frame from 400 samples
MEL_FRAMES = 3000  # 30 s of 10 ms mel frames, the encoder's fixed input length
BEAM_SIZE = 1  # greedy: 2 beams cost 5-10% more per clip on 2 CPU cores and gave the same words on our clips
LANGUAGE = "en"
MAX_NEW_TOKENS = 220  # half of Whisper's 448-token window; ~30 s of fast speech is under 150 tokens
# faster-whisper's own thresholds: a window that is probably silence gets no text (Whisper invents
# "Thank you." on silence), and a text that compresses too well is a repetition loop.
NO_SPEECH_PROB = 0.6
LOW_LOGPROB = -1.0
LOOP_COMPRESSION_RATIO = 2.4


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float  # 0..1: exp(mean token log-prob) for Whisper, mean max-prob of spoken frames for CTC
    duration_s: float  # audio length
    seconds: float  # compute time: the batch's wall time shared evenly over its clips
    features: np.ndarray | None  # encoder states (T, D) when asked for: Whisper T = ceil(samples / 320); CTC the
    #                               model's own frame count


class SpeechEncoder(Protocol):
    sample_rate: int
    feature_dim: int

    def predict_batch(self, clips: list[np.ndarray], *, with_features: bool = False) -> list[Transcript]: ...


def load_speech_encoder(name: str, *, placement: Placement, offline: bool, cache_dir: Path) -> SpeechEncoder:
    """'default' -> packaged Whisper base; a folder with model.bin -> CTranslate2; else a HF id or folder."""
    if name == DEFAULT:
        return FasterWhisperEncoder.load(str(default_speech_model(cache_dir)), placement=placement)
    path = Path(name).expanduser()
    if (path / "model.bin").exists():
        return FasterWhisperEncoder.load(str(path), placement=placement)
    return TransformersSpeechEncoder.load(str(path) if path.exists() else name, placement=placement, offline=offline)


def n_states(samples: int) -> int:
    """Encoder states that cover `samples` of audio (at least 1)."""
    return max(1, math.ceil(samples / SAMPLES_PER_STATE))


def _lead_in(clip: np.ndarray) -> np.ndarray:
    """(N,) -> (LEAD_IN_SAMPLES + N,): silence in front, see LEAD_IN_SAMPLES."""
    assert clip.ndim == 1, f"a clip is mono samples (N,), not {clip.shape}"
    return np.concatenate([np.zeros(LEAD_IN_SAMPLES, dtype=np.float32), clip.astype(np.float32, copy=False)])


class FasterWhisperEncoder:
    sample_rate = SAMPLE_RATE

    def __init__(self, model, *, placement: Placement) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self.model = model  # faster_whisper.WhisperModel; .model is the ctranslate2 Whisper
        self.placement = placement
        self.tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                                   language=LANGUAGE)
        self.prompt = model.get_prompt(self.tokenizer, previous_tokens=[], without_timestamps=True)
        self.suppress = list(get_suppressed_tokens(self.tokenizer, [-1]))
        # The CT2 config does not record d_model: read it off one silent window (also warms the model up).
        self.feature_dim = int(self._encode(np.zeros((1, model.model.n_mels, MEL_FRAMES),
                                                     dtype=np.float32)).shape[-1])

    @classmethod
    def load(cls, model_dir: str, *, placement: Placement) -> FasterWhisperEncoder:
        from faster_whisper import WhisperModel

        compute_type = "float16" if placement.device.type == "cuda" else "int8"
        started = time.perf_counter()
        model = WhisperModel(model_dir, device=placement.device.type, compute_type=compute_type,
                             local_files_only=True)
        encoder = cls(model, placement=placement)
        log.info("loaded whisper %s (%s) in %.1f s", model_dir, compute_type, time.perf_counter() - started)
        return encoder

    def _encode(self, mels: np.ndarray):
        """(B, n_mels, 3000) log-mel -> ctranslate2 StorageView (B, 1500, D), left on the model's device."""
        import ctranslate2

        return self.model.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mels)), to_cpu=False)

    def _to_numpy(self, states) -> np.ndarray:
        if self.placement.device.type == "cuda":
            return torch.as_tensor(states, device=self.placement.device).float().cpu().numpy()
        return np.asarray(states, dtype=np.float32)

    def _mels(self, clip: np.ndarray) -> np.ndarray:
        """(N,) samples -> (n_mels, 3000) log-mel, zero-padded like faster-whisper's own windows."""
        from faster_whisper.audio import pad_or_trim

        return pad_or_trim(self.model.feature_extractor(clip, padding=160))

    def predict_batch(self, clips: list[np.ndarray], *, with_features: bool = False) -> list[Transcript]:
        started = time.perf_counter()
        padded = [_lead_in(clip) for clip in clips]
        rows: list[tuple[str, float, np.ndarray | None]] = [("", 0.0, None)] * len(clips)
        short = [i for i, clip in enumerate(padded) if len(clip) <= WINDOW_SAMPLES]
        slow = [i for i, clip in enumerate(padded) if len(clip) > WINDOW_SAMPLES]
        if short:
            for i, (row, looped) in zip(short, self._one_window([padded[i] for i in short], with_features), strict=True):
                rows[i] = row
                if looped:
                    slow.append(i)
        for i in sorted(slow):
            rows[i] = self._long(padded[i], with_features)
        share = (time.perf_counter() - started) / max(1, len(clips))
        return [Transcript(text=text, confidence=conf, duration_s=len(clip) / SAMPLE_RATE, seconds=share,
                           features=feats) for clip, (text, conf, feats) in zip(clips, rows, strict=True)]

    def _one_window(self, clips: list[np.ndarray], with_features: bool) -> list[tuple[tuple, bool]]:
        """Lead-in clips of <= 30 s: one encoder pass and one generate call for the lot.

        -> ((text, conf, feats), looped) per clip.
        """
        from faster_whisper.transcribe import get_compression_ratio

        mels = np.stack([self._mels(clip) for clip in clips])  # (B, n_mels, 3000)
        states = self._encode(mels)  # (B, 1500, D)
        results = self.model.model.generate(
            states, [self.prompt] * len(clips), beam_size=BEAM_SIZE, max_length=len(self.prompt) + MAX_NEW_TOKENS,
            return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=self.suppress,
        )
        all_states = self._to_numpy(states) if with_features else None  # (B, 1500, D)
        out = []
        for b, (clip, result) in enumerate(zip(clips, results, strict=True)):
            tokens = result.sequences_ids[0]
            # CT2 scores are length-normalised sums; faster-whisper's avg_logprob also counts the end token.
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            text = self.tokenizer.decode(tokens).strip()
            if result.no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOW_LOGPROB:
                text = ""
            own = slice(LEAD_IN_STATES, LEAD_IN_STATES + n_states(len(clip) - LEAD_IN_SAMPLES))
            feats = all_states[b, own].copy() if all_states is not None else None  # (T, D)
            looped = bool(text) and get_compression_ratio(text) > LOOP_COMPRESSION_RATIO
            out.append(((text, float(math.exp(min(0.0, avg_logprob))), feats), looped))
        return out

    def _long(self, clip: np.ndarray, with_features: bool) -> tuple[str, float, np.ndarray | None]:
        """A lead-in clip through faster-whisper's sequential transcribe (seeks on segment ends, temperature fallback)."""
        segments, _ = self.model.transcribe(clip, language=LANGUAGE, beam_size=BEAM_SIZE, vad_filter=False,
                                            condition_on_previous_text=False, without_timestamps=False)
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        conf = float(np.exp(np.mean([s.avg_logprob for s in segments]))) if segments else 0.0
        feats = None
        if with_features:  # a second encoder pass, 30 s at a time: (T, D)
            windows = [clip[start:start + WINDOW_SAMPLES] for start in range(0, len(clip), WINDOW_SAMPLES)]
            states = self._to_numpy(self._encode(np.stack([self._mels(w) for w in windows])))  # (W, 1500, D)
            feats = np.concatenate([s[: n_states(len(w))] for s, w in zip(states, windows, strict=True)])
            feats = feats[LEAD_IN_STATES: LEAD_IN_STATES + n_states(len(clip) - LEAD_IN_SAMPLES)]  # (T, D)
        return text, min(1.0, conf), feats


class TransformersSpeechEncoder:
    sample_rate = SAMPLE_RATE

    def __init__(self, model: Any, processor, *, placement: Placement) -> None:  # Whisper or a CTC model
        self.model = model
        self.processor = processor
        self.placement = placement
        self.seq2seq = bool(model.config.is_encoder_decoder)
        self.feature_dim = int(getattr(model.config, "d_model", None) or model.config.hidden_size)

    @classmethod
    def load(cls, source: str, *, placement: Placement, offline: bool) -> TransformersSpeechEncoder:
        from transformers import AutoConfig, AutoModelForCTC, AutoModelForSpeechSeq2Seq, AutoProcessor

        try:
            config = AutoConfig.from_pretrained(source, local_files_only=offline)
        except OSError as exc:
            hint = " (offline: hub ids must already be in the local HF cache)" if offline else ""
            raise RuntimeError(f"cannot load speech model {source!r}{hint}: {exc}") from exc
        auto_class = AutoModelForSpeechSeq2Seq if config.is_encoder_decoder else AutoModelForCTC
        model, processor = load_pretrained(auto_class, source, placement=placement, offline=offline,
                                           preprocessor=AutoProcessor)
        return cls(model, processor, placement=placement)

    @torch.inference_mode()
    def predict_batch(self, clips: list[np.ndarray], *, with_features: bool = False) -> list[Transcript]:
        """Clips over 30 s are cut into 30 s windows, transcribed as a batch, and joined back (text, features)."""
        if not clips:
            return []
        started = time.perf_counter()
        windows, owner = [], []
        for i, clip in enumerate(clips):
            # The lead-in is a Whisper fix; a CTC conv stack needs one receptive field (25 ms) at least.
            padded = _lead_in(clip) if self.seq2seq else np.pad(clip, (0, max(0, CTC_MIN_SAMPLES - len(clip))))
            for start in range(0, len(padded), WINDOW_SAMPLES):
                windows.append(padded[start:start + WINDOW_SAMPLES])
                owner.append(i)
        rows = self._seq2seq(windows) if self.seq2seq else self._ctc(windows)
        share = (time.perf_counter() - started) / len(clips)
        out = []
        for i, clip in enumerate(clips):
            mine = [row for row, o in zip(rows, owner, strict=True) if o == i]
            text = " ".join(t for t, _, _ in mine if t).strip()
            feats = None
            if with_features:
                feats = np.concatenate([f for _, _, f in mine])  # (T, D)
                if self.seq2seq:
                    feats = feats[LEAD_IN_STATES: LEAD_IN_STATES + n_states(len(clip))]
            out.append(Transcript(text=text, confidence=float(np.mean([c for _, c, _ in mine])),
                                  duration_s=len(clip) / SAMPLE_RATE, seconds=share, features=feats))
        return out

    def _seq2seq(self, windows: list[np.ndarray]) -> list[tuple[str, float, np.ndarray]]:
        from transformers.modeling_outputs import BaseModelOutput

        inputs = self.processor.feature_extractor(windows, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        mels = inputs.input_features.to(self.placement.device, self.placement.dtype)  # (B, n_mels, 3000)
        states = self.model.get_encoder()(mels).last_hidden_state  # (B, 1500, D)
        gen = self.model.generation_config
        language = {"language": LANGUAGE, "task": "transcribe"} if getattr(gen, "lang_to_id", None) else {}
        out = self.model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=states), num_beams=BEAM_SIZE,
                                  max_new_tokens=min(MAX_NEW_TOKENS, self.model.config.max_target_positions // 2),
                                  return_dict_in_generate=True, output_scores=True, **language)
        steps = len(out.scores)
        new_tokens = out.sequences[:, -steps:]  # (B, S): the prompt tokens come first
        logprobs = torch.stack(out.scores, dim=1).float().log_softmax(-1)  # (B, S, V)
        chosen = logprobs.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)  # (B, S)
        eos = gen.eos_token_id if isinstance(gen.eos_token_id, int) else gen.eos_token_id[0]
        # Count tokens up to and including the first end token; what follows is padding.
        after_end = (new_tokens == eos).long().cumsum(-1) - (new_tokens == eos).long() > 0  # (B, S)
        probs = chosen.exp().masked_fill(after_end, 0.0)
        confidence = probs.sum(-1) / (~after_end).sum(-1).clamp(min=1)  # (B,) mean token probability
        texts = self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        states = states.float().cpu().numpy()
        return [(text.strip(), float(conf), states[b, : n_states(len(w))])
                for b, (text, conf, w) in enumerate(zip(texts, confidence.tolist(), windows, strict=True))]

    def _ctc(self, windows: list[np.ndarray]) -> list[tuple[str, float, np.ndarray]]:
        inputs = self.processor(windows, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True)
        values = inputs.input_values.to(self.placement.device, self.placement.dtype)  # (B, N)
        mask = inputs.get("attention_mask")
        out = self.model(values, attention_mask=None if mask is None else mask.to(self.placement.device),
                         output_hidden_states=True)
        probs = out.logits.float().softmax(-1)  # (B, T, V)
        best, ids = probs.max(-1)  # (B, T)
        texts = self.processor.batch_decode(ids)
        blank = self.processor.tokenizer.pad_token_id  # CTC blank is the pad token in wav2vec2 vocabularies
        states = out.hidden_states[-1].float().cpu().numpy()  # (B, T, D)
        rows = []
        for b, w in enumerate(windows):
            frames = self.model._get_feat_extract_output_lengths(torch.tensor(len(w))).item()  # this clip's T
            spoken = ids[b, :frames] != blank
            conf = best[b, :frames][spoken].mean() if spoken.any() else best[b, :frames].mean()
            rows.append((texts[b].strip(), float(conf), states[b, :frames]))
        return rows
