"""A trained FusedSeq2Seq as the server's Decoder (PARLEY_DECODER=fused:<checkpoint dir>).

It takes the encoders' own features: the pipeline hands over the Whisper states of the turn's voice clip
and the vision backbone's features of its images with the prompt. generate() runs in a worker thread;
its streamer hands text pieces to the event loop through an asyncio queue. One reply per generate call:
this decoder does not batch across sessions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from models.decoder import GREEDY, GenerationStats, ReplyContext, RowSampler, Sampling, TextStream, pick_tokens, row_sampler
from models.fused import FusedSeq2Seq, encode_context, render_context
from models.registry import Placement

_END = object()


class FeatureMismatch(ValueError):
    """The checkpoint was trained on features of other sizes than the configured encoders give."""


def check_features(config, *, image_dim: int | None, audio_dim: int | None) -> None:
    """Refuse a checkpoint whose feature sizes differ from what the encoders give (None: no features)."""
    wanted = (("image", config.image_dim, image_dim, config.image_features, "PARLEY_VISION_BACKBONE"),
              ("audio", config.audio_dim, audio_dim, config.audio_features, "PARLEY_SPEECH_MODEL"))
    for name, takes, gives, made_by, setting in wanted:
        if takes and gives != takes:
            have = "no features" if gives is None else f"{gives}-d features"
            raise FeatureMismatch(
                f"the fused checkpoint takes {takes}-d {name} features"
                f" (trained with {made_by or 'an unnamed encoder'}),"
                f" but the configured {name} encoder gives {have}: set {setting}={made_by or '...'} to the encoder"
                f" it was trained with, or retrain with `parley train` on the encoders you serve")


class FusedSeq2SeqDecoder:
    wants_features = True
    grounded_by_construction = False

    def __init__(self, model: FusedSeq2Seq, tokenizer, *, placement: Placement) -> None:
        self.model, self.tokenizer, self.placement = model, tokenizer, placement

    @classmethod
    def load(cls, directory: str, *, placement: Placement) -> FusedSeq2SeqDecoder:
        """A `parley train` output folder. Check it against the encoders with check_encoders()."""
        from transformers import AutoConfig, AutoTokenizer

        path = Path(directory).expanduser()
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"no fused checkpoint in {path} (no config.json): train one with `parley train`")
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if config.model_type != "parley_fused":
            raise ValueError(f"{path} holds a {config.model_type!r} model, not a FusedSeq2Seq checkpoint")
        # transformers' wrapper of `to` is typed as taking a model.
        model = FusedSeq2Seq.from_pretrained(path, dtype=placement.dtype).to(placement.device).eval()  # type: ignore[arg-type]
        return cls(model, AutoTokenizer.from_pretrained(path, local_files_only=True), placement=placement)

    def check_encoders(self, *, image_dim: int | None, audio_dim: int | None) -> None:
        """FeatureMismatch unless the encoders give the feature sizes this model was trained on."""
        check_features(self.model.config, image_dim=image_dim, audio_dim=audio_dim)

    def inputs(self, context: ReplyContext) -> dict[str, torch.Tensor]:
        """One reply's model inputs: input_ids (1, L); image_features (1, P, Dv) (all images, one after
        the other) and audio_features (1, T, Da) where the turn has them and the model takes them."""
        config, device = self.model.config, self.placement.device
        ids = encode_context(self.tokenizer, render_context(context.messages), config)
        batch = {"input_ids": torch.tensor([ids], device=device)}
        if config.image_dim and context.image_features:
            images = np.concatenate(context.image_features)  # (P, Dv)
            batch["image_features"] = torch.from_numpy(images).to(device, self.placement.dtype)[None]
        if config.audio_dim and context.audio_features is not None:
            batch["audio_features"] = torch.from_numpy(context.audio_features).to(device, self.placement.dtype)[None]
        return batch

    async def stream(
        self, context: ReplyContext, *, max_new_tokens: int, stats: GenerationStats | None = None,
        sampling: Sampling = GREEDY,
    ) -> AsyncIterator[str]:
        stats = stats if stats is not None else GenerationStats()
        sampler = row_sampler(sampling, self.placement.device)
        processors = LogitsProcessorList([_Sampled(sampler)] if sampler is not None else [])
        batch = self.inputs(context)
        stats.prompt_tokens = int(batch["input_ids"].shape[1])
        queue: asyncio.Queue = asyncio.Queue()
        streamer = _QueueStreamer(self.tokenizer, asyncio.get_running_loop(), queue, stats)
        cancelled = threading.Event()
        budget = min(max_new_tokens, self.model.config.max_target_positions - 1)

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**batch, max_new_tokens=budget, do_sample=False, streamer=streamer,
                                        logits_processor=processors,
                                        stopping_criteria=StoppingCriteriaList([_Cancelled(cancelled)]))
            except Exception as exc:  # handed to the caller, who raises it
                streamer.send(exc)
            finally:
                streamer.send(_END)

        worker = asyncio.create_task(asyncio.to_thread(run))
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            cancelled.set()  # a caller that stops listening stops the generation at its next token
            await worker

    async def aclose(self) -> None:
        return None


class _QueueStreamer(BaseStreamer):
    """generate()'s streamer, in its thread: text pieces go to the event loop's queue as soon as they
    are printable (models/decoder.py TextStream, as the default decoder streams)."""

    def __init__(self, tokenizer, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue,
                 stats: GenerationStats) -> None:
        self.text, self.loop, self.queue, self.stats = TextStream(tokenizer), loop, queue, stats
        self.started = False

    def put(self, value: torch.Tensor) -> None:
        if not self.started:  # the first call is the decoder start token
            self.started = True
            return
        for token_id in value.flatten().tolist():
            self.stats.completion_tokens += 1
            if piece := self.text.push(token_id):
                self.send(piece)

    def end(self) -> None:
        return None  # the worker sends the end marker, also after an error

    def send(self, item: object) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class _Cancelled(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class _Sampled(LogitsProcessor):
    """Sampling with the reply's own generator (generate()'s do_sample draws from the global one): the drawn
    token keeps its score and every other is masked, so generate()'s greedy pick takes the draw."""

    def __init__(self, sampler: RowSampler) -> None:
        self.sampler = sampler

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        chosen = pick_tokens(scores, [self.sampler] * scores.shape[0])  # (B,)
        masked = torch.full_like(scores, float("-inf"))  # (B, V)
        return masked.scatter_(1, chosen[:, None], scores.gather(1, chosen[:, None]))
