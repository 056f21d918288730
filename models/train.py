"""Fine-tune a FusedSeq2Seq on a JSONL dialogue set (`parley train`).

One example per line; media paths are relative to the JSONL file:

    {"id": "d01-t2",
     "context": [{"role": "user", "text": "my lamp arrived broken"}, {"role": "assistant", "text": "Sorry! ..."}],
     "text": "here is a photo", "images": ["media/d01.png"], "audio": "media/d01-t2.wav",
     "reply": "Thanks, I can see order A7Q-4412 ...",
     "intent": "damaged_item", "slots": {"order_id": "A7Q-4412"}}      <- intent/slots: for `parley eval` only

`text`, `images` (or `image`), `audio` are the turn being answered, each optional. The encoders run once
over the set, frozen (Whisper states for audio via SpeechEncoder.predict_batch(with_features=True),
its transcript joined to the typed text as the server does; image features from a ViT/CLIP backbone or
the built-in pixel patches); the projectors and the decoder train. Checkpoints go to OUT/checkpoint
(model, tokenizer, optimiser state), the final model to OUT itself: serve it with PARLEY_DECODER=fused:OUT.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from pathlib import Path

import numpy as np
import torch

from models.fused import (IGNORE_INDEX, FusedConfig, FusedSeq2Seq, StepState, encode_context, encode_decision,
                          render_context)

log = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\[[a-z][a-z0-9_]*\]")  # a fact's slot in a delexicalised reply (app/dialogue/decision_text.py)
CHECKPOINT = "checkpoint"  # OUT/checkpoint: the latest periodic checkpoint, what --resume reads
STATE_FILE = "trainer_state.pt"
PROJECTOR_PARTS = ("encoder.image_proj", "encoder.audio_proj", "encoder.modality", "encoder.memory_positions",
                   "encoder.memory_start")  # what --only-projectors trains


@dataclass(frozen=True)
class Example:
    """One JSONL line, media paths resolved."""

    id: str
    context: list[dict[str, str]]  # [{"role": "user"|"assistant"|"system", "content": ...}], oldest first
    text: str
    reply: str  # delexicalised where the data has a decision: "Order [order_id] is [status]."
    images: tuple[Path, ...] = ()
    audio: Path | None = None
    intent: str | None = None
    slots: dict[str, str] = field(default_factory=dict)
    decision: str = ""  # the policy's decision as text (app/dialogue/decision_text.py describe)
    values: dict[str, str] = field(default_factory=dict)  # placeholder name -> value
    required: tuple[str, ...] = ()  # placeholders the reply must use
    act: str | None = None
    split: str = "train"  # "train" | "heldout"
    holdout: str | None = None  # what a held-out example is new in: "phrasing" | "values" | "flow"

    @property
    def modalities(self) -> list[str]:
        present = {"text": bool(self.text), "image": bool(self.images), "audio": self.audio is not None}
        return [name for name, here in present.items() if here]


def read_jsonl(path: Path) -> list[Example]:
    """Examples from a JSONL file; a bad line fails with its line number."""
    examples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            images = row.get("images") or ([row["image"]] if row.get("image") else [])
            examples.append(Example(
                id=str(row.get("id", number)),
                context=[{"role": t["role"], "content": t["text"]} for t in row.get("context", [])],
                text=row.get("text") or "", reply=row["reply"],
                images=tuple(path.parent / p for p in images),
                audio=path.parent / row["audio"] if row.get("audio") else None,
                intent=row.get("intent"), slots=dict(row.get("slots") or {}),
                decision=row.get("decision") or "", values={str(k): str(v) for k, v in (row.get("values") or {}).items()},
                required=tuple(row.get("required") or ()), act=row.get("act"),
                split=row.get("split") or "train", holdout=row.get("holdout"),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a valid example ({exc!r})") from exc
    if not examples:
        raise ValueError(f"{path} holds no examples")
    return examples


@dataclass
class Item:
    """A featurised example: what the model trains on, or one reply's request when serving."""

    input_ids: list[int]  # rendered context, newest tokens kept
    labels: list[int]  # reply tokens + end token (none when serving)
    decision_ids: list[int] = field(default_factory=list)  # the decision text; empty: the model reads none
    required_ids: list[int] = field(default_factory=list)  # the [placeholder] tokens the reply must write
    banned_ids: list[int] = field(default_factory=list)  # the [placeholder] tokens it may not write: no value for them
    image: np.ndarray | None = None  # (P, Dv), all the turn's images one after the other
    audio: np.ndarray | None = None  # (T, Da)
    reply: str = ""

    def __len__(self) -> int:
        """The tokens the model reads (a reply's prompt tokens)."""
        return len(self.input_ids) + len(self.decision_ids)


def featurise(examples: list[Example], tokenizer, *, config: FusedConfig, image_featuriser=None,
              speech_encoder=None, batch_size: int = 8) -> list[Item]:
    """Run the frozen encoders once over the set. The featurisers are models/vision.py's
    load_image_featuriser(...) and models/speech.py's SpeechEncoder; either may be None when unused."""
    from PIL import Image

    items = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        heard = {}
        spoken = [e for e in chunk if e.audio is not None]
        if spoken:
            _need(speech_encoder, "audio", config.audio_dim)
            results = speech_encoder.predict_batch([read_audio(e.audio) for e in spoken if e.audio is not None],
                                                   with_features=True)
            heard = {e.id: r for e, r in zip(spoken, results, strict=True)}
        for e in chunk:
            image = None
            if e.images:
                _need(image_featuriser, "image", config.image_dim)
                pictures = [Image.open(p).convert("RGB") for p in e.images]
                image = np.concatenate(image_featuriser.predict_batch(pictures)).astype(np.float32)  # (P, Dv)
            transcript = heard[e.id].text.strip() if e.id in heard else ""
            utterance = " ".join(part for part in (e.text, transcript) if part) or "(sent a photo)"
            context = render_context(e.context + [{"role": "user", "content": utterance}])
            items.append(Item(
                input_ids=encode_context(tokenizer, context, config),
                labels=encode_reply(tokenizer, e.reply, config),
                decision_ids=encode_decision(tokenizer, e.decision, config),
                required_ids=encode_required(tokenizer, e.required), banned_ids=encode_banned(tokenizer, e.values),
                image=image, audio=heard[e.id].features if e.id in heard else None, reply=e.reply,
            ))
    return items


def _need(featuriser, name: str, dim: int) -> None:
    if featuriser is None or not dim:
        raise ValueError(f"the data has {name} but no {name} encoder (or the model's {name}_dim is 0)")
    if featuriser.feature_dim != dim:
        raise ValueError(f"the {name} encoder gives {featuriser.feature_dim}-d features, the model takes {dim}-d")


def encode_required(tokenizer, names: Sequence[str]) -> list[int]:
    """The token of each required [placeholder]; a name the vocabulary lacks as one token is left out (the
    model cannot write it, and the pipeline sends the policy's wording for a reply without it)."""
    ids = [tokenizer.convert_tokens_to_ids(f"[{name}]") for name in names]
    return [i for i in ids if i is not None and i != tokenizer.unk_token_id]


def encode_banned(tokenizer, values: dict[str, str]) -> list[int]:
    """The vocabulary's [placeholder] tokens that name none of `values`: a reply writing one could not be filled."""
    have = {f"[{name}]" for name in values}
    return sorted(i for token, i in tokenizer.get_added_vocab().items() if PLACEHOLDER.fullmatch(token) and token not in have)


def encode_reply(tokenizer, text: str, config: FusedConfig) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: config.max_target_positions - 1]
    return ids + [config.eos_token_id]


def read_audio(path: Path) -> np.ndarray:
    """An audio file -> (N,) float32 mono at 16 kHz, what the speech encoders take."""
    import soundfile as sf
    from scipy.signal import resample_poly

    from models.speech import SAMPLE_RATE

    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = math.gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // g, rate // g)
    return np.clip(mono, -1, 1).astype(np.float32)


def _pad_features(rows: list[np.ndarray | None], dim: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-example (N_i, D) or None -> (B, N, D) zero-padded and (B, N) mask; None if no example has any."""
    if all(r is None for r in rows):
        return None
    longest = max(len(r) for r in rows if r is not None)
    feats = torch.zeros(len(rows), longest, dim)
    mask = torch.zeros(len(rows), longest, dtype=torch.bool)
    for b, r in enumerate(rows):
        if r is not None:
            feats[b, : len(r)] = torch.from_numpy(np.asarray(r, np.float32))
            mask[b, : len(r)] = True
    return feats, mask


def collate(items: list[Item], config: FusedConfig, *, with_labels: bool = True) -> dict[str, torch.Tensor]:
    """Items -> the model's keyword arguments: input_ids/attention_mask (B, L), decision_ids/decision_mask
    (B, K) when any item has a decision, required_ids (B, R) padded with pad_token_id when any item has required
    facts, banned (B, V) bool when decoding (no labels) and any item has banned tokens, image_features/image_mask
    (B, P, Dv)/(B, P), audio_features/audio_mask (B, T, Da)/(B, T), labels (B, S) padded with IGNORE_INDEX."""
    B = len(items)
    L = max(len(i.input_ids) for i in items)
    if config.pad_token_id is None:
        raise ValueError("the config needs a pad_token_id to batch")
    input_ids = torch.full((B, L), config.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(B, L, dtype=torch.long)
    for b, item in enumerate(items):
        input_ids[b, : len(item.input_ids)] = torch.tensor(item.input_ids)
        attention_mask[b, : len(item.input_ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if any(i.decision_ids for i in items):
        K = max(len(i.decision_ids) for i in items)
        batch["decision_ids"] = torch.full((B, K), config.pad_token_id, dtype=torch.long)
        batch["decision_mask"] = torch.zeros(B, K, dtype=torch.long)
        for b, item in enumerate(items):
            batch["decision_ids"][b, : len(item.decision_ids)] = torch.tensor(item.decision_ids, dtype=torch.long)
            batch["decision_mask"][b, : len(item.decision_ids)] = 1
    if any(i.required_ids for i in items):
        batch["required_ids"] = torch.full((B, max(len(i.required_ids) for i in items)), config.pad_token_id)
        for b, item in enumerate(items):
            batch["required_ids"][b, : len(item.required_ids)] = torch.tensor(item.required_ids, dtype=torch.long)
    if not with_labels and any(i.banned_ids for i in items):  # decoding reads it (start_decoding); training does not
        batch["banned"] = torch.zeros(B, config.vocab_size, dtype=torch.bool)
        for b, item in enumerate(items):
            batch["banned"][b, item.banned_ids] = True
    for name, rows, dim in (("image", [i.image for i in items], config.image_dim),
                            ("audio", [i.audio for i in items], config.audio_dim)):
        padded = _pad_features(rows, dim)
        if padded is not None:
            batch[f"{name}_features"], batch[f"{name}_mask"] = padded
    if with_labels:
        S = max(len(i.labels) for i in items)
        labels = torch.full((B, S), IGNORE_INDEX, dtype=torch.long)
        for b, item in enumerate(items):
            labels[b, : len(item.labels)] = torch.tensor(item.labels)
        batch["labels"] = labels
    return batch


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 10
    batch_size: int = 8
    grad_accum: int = 1  # optimiser step every this many batches
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20
    max_steps: int = 0  # 0 = no cap; otherwise stop after this many optimiser steps
    checkpoint_every: int = 200  # optimiser steps; 0 = only at the end of each epoch
    only_projectors: bool = False
    seed: int = 0
    eval_max_new_tokens: int = 48
    progress: bool = True


def trainable(model: FusedSeq2Seq, *, only_projectors: bool) -> list[torch.nn.Parameter]:
    """Everything, or only the modality projectors, embeddings and memory start slot."""
    for name, param in model.named_parameters():
        param.requires_grad = not only_projectors or name.startswith(PROJECTOR_PARTS)
    return [p for p in model.parameters() if p.requires_grad]


def train(model: FusedSeq2Seq, items: list[Item], *, options: TrainOptions, val_items: Sequence[Item] = (),
          tokenizer=None, out_dir: Path | None = None, resume: bool = False) -> list[dict]:
    """Train in place; returns one dict of metrics per epoch. With `out_dir`: periodic checkpoints to
    out_dir/checkpoint (resumable with `resume=True`) and the final model in out_dir."""
    from tqdm.auto import tqdm

    device = model.device
    params = trainable(model, only_projectors=options.only_projectors)
    optimiser = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    batches_per_epoch = math.ceil(len(items) / options.batch_size)
    total = options.epochs * math.ceil(batches_per_epoch / options.grad_accum)
    if options.max_steps:
        total = min(total, options.max_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: _lr_factor(s, options.warmup_steps, total))
    amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "history": []}
    if resume and out_dir is not None and (out_dir / CHECKPOINT / STATE_FILE).exists():
        state = _load_checkpoint(model, optimiser, schedule, scaler, out_dir / CHECKPOINT)
        log.info("resumed from step %d (epoch %d, batch %d)", state["step"], state["epoch"] + 1, state["batch"])
    torch.manual_seed(options.seed + state["step"])
    done = False
    for epoch in range(state["epoch"], options.epochs):
        order = list(range(len(items)))
        random.Random(options.seed + epoch).shuffle(order)  # the same order again after a resume
        model.train()
        bar = tqdm(range(state["batch"], batches_per_epoch), desc=f"epoch {epoch + 1}/{options.epochs}",
                   disable=not options.progress, leave=False)
        running = []
        for b in bar:
            batch = collate([items[i] for i in order[b * options.batch_size:(b + 1) * options.batch_size]],
                            model.config)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            scaler.scale(loss / options.grad_accum).backward()
            running.append(loss.item())
            if (b + 1) % options.grad_accum == 0 or b + 1 == batches_per_epoch:
                scaler.unscale_(optimiser)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                scaler.step(optimiser)
                scaler.update()
                optimiser.zero_grad(set_to_none=True)
                schedule.step()
                state["step"] += 1
                bar.set_postfix(loss=f"{np.mean(running[-20:]):.3f}", step=state["step"])
                if out_dir is not None and options.checkpoint_every and state["step"] % options.checkpoint_every == 0:
                    _save_checkpoint(model, tokenizer, optimiser, schedule, scaler, out_dir / CHECKPOINT,
                                     {**state, "epoch": epoch, "batch": b + 1})
                if options.max_steps and state["step"] >= options.max_steps:
                    done = True
                    break
        bar.close()
        metrics = {"epoch": epoch + 1, "step": state["step"], "train_loss": round(float(np.mean(running)), 4)}
        if val_items:
            metrics |= evaluate(model, list(val_items), tokenizer=tokenizer, options=options)
        state["history"].append(metrics)
        log.info("epoch %d: %s", epoch + 1, json.dumps(metrics))
        state["batch"] = 0
        if out_dir is not None:
            _save_checkpoint(model, tokenizer, optimiser, schedule, scaler, out_dir / CHECKPOINT,
                             {**state, "epoch": epoch + 1, "batch": 0})
        if done:
            break
    if out_dir is not None:
        save_model(model, tokenizer, out_dir)
        (out_dir / "metrics.json").write_text(json.dumps(state["history"], indent=1))
    return state["history"]


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


@torch.inference_mode()
def evaluate(model: FusedSeq2Seq, items: list[Item], *, tokenizer, options: TrainOptions) -> dict:
    """Validation loss; with a tokenizer also greedy replies scored by exact match and BLEU."""
    was_training = model.training
    model.eval()
    losses, replies = [], []
    for start in range(0, len(items), options.batch_size):
        chunk = items[start:start + options.batch_size]
        batch = {k: v.to(model.device) for k, v in collate(chunk, model.config).items()}
        losses.append(float(model(**batch).loss) * len(chunk))
        if tokenizer is not None:
            replies += generate_replies(model, chunk, tokenizer, max_new_tokens=options.eval_max_new_tokens)
    model.train(was_training)
    metrics = {"val_loss": round(sum(losses) / len(items), 4)}
    if tokenizer is not None:
        import sacrebleu

        references = [i.reply for i in items]
        metrics["val_exact_match"] = round(float(np.mean([r.strip() == t.strip() for r, t in zip(
            replies, references, strict=True)])), 4)
        metrics["val_bleu"] = round(sacrebleu.corpus_bleu(replies, [references]).score, 2)
    return metrics


def start_decoding(model: FusedSeq2Seq, items: list[Item], *, device: torch.device, dtype: torch.dtype) -> StepState:
    """Items encoded into one memory each (features in `dtype` on `device`), rows ready to decode with
    FusedSeq2Seq.step: how the server's decoder (models/fused_decoder.py) and the evaluation here start."""
    batch = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device)
             for k, v in collate(items, model.config, with_labels=False).items()}
    required, banned = batch.pop("required_ids", None), batch.pop("banned", None)
    memory = model.get_encoder()(**batch)
    return model.start_steps(memory.last_hidden_state, memory.attention_mask, required, banned)


@torch.inference_mode()
def generate_replies(model: FusedSeq2Seq, items: list[Item], tokenizer, *, max_new_tokens: int) -> list[str]:
    """Greedy replies for a batch of items, one step at a time as the server decodes them (generate()'s cache
    cannot track the facts still to say)."""
    config = model.config
    state = start_decoding(model, items, device=model.device, dtype=model.dtype)
    stops = model.end_ids
    ids = torch.full((len(items),), cast(int, config.decoder_start_token_id), device=model.device)
    written: list[list[int]] = [[] for _ in items]
    done = [False] * len(items)
    for _ in range(min(max_new_tokens, config.max_target_positions)):
        logits, state = model.step(ids, state)  # (B, V)
        ids = logits.argmax(-1)  # (B,)
        for row, token in enumerate(ids.tolist()):
            done[row] = done[row] or token in stops
            if not done[row]:
                written[row].append(token)
        if all(done):
            break
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in written]


def save_model(model: FusedSeq2Seq, tokenizer, directory: Path) -> None:
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)


def _save_checkpoint(model, tokenizer, optimiser, schedule, scaler, directory: Path, state: dict) -> None:
    """Written to a side folder first and renamed, so a crash mid-save keeps the previous checkpoint."""
    import shutil

    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    save_model(model, tokenizer, partial)
    torch.save({"state": state, "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(),
                "scaler": scaler.state_dict()}, partial / STATE_FILE)
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)


def _load_checkpoint(model, optimiser, schedule, scaler, directory: Path) -> dict:
    from safetensors.torch import load_file

    weights = load_file(str(directory / "model.safetensors"), device=str(model.device))
    model.load_state_dict(weights, strict=False)  # tied copies are stored once
    saved = torch.load(directory / STATE_FILE, map_location=model.device, weights_only=False)
    optimiser.load_state_dict(saved["optimiser"])
    schedule.load_state_dict(saved["schedule"])
    scaler.load_state_dict(saved["scaler"])
    return saved["state"]


def new_config(tokenizer, **sizes) -> FusedConfig:
    """A FusedConfig for `tokenizer`: its vocabulary and special tokens (pad falls back to end-of-text)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no end-of-sequence token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    return FusedConfig(vocab_size=len(tokenizer), pad_token_id=pad, eos_token_id=eos, bos_token_id=start,
                       decoder_start_token_id=start, **sizes)

