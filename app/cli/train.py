"""`parley train`: the reply model, from the domain to a checkpoint with its model card.

1. Data: a JSONL file given on the command line, or the set generated from the domain
   (app/dialogue/dataset.py build; built once and cached under the data directory).
2. Tokenizer: a byte-level BPE learnt from the training split, every [placeholder] one token
   (models/reply_tokenizer.py), or a given HF tokenizer.
3. Features: tokenised text, and with media the frozen encoders' features, computed once and cached
   beside the output (OUT/features-<hash>.pt).
4. Training: models/train.py, tqdm progress, periodic checkpoints in OUT/checkpoint (`--resume`).
5. Held-out scores through the serving decoder (models/fused_decoder.py, greedy, batched as the server
   batches): app/reply_metrics.py; written to OUT/heldout.json and OUT/README.md, the model card.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from app.reply_metrics import ActOf, score, scored
from models.fused import FusedSeq2Seq
from models.train import CHECKPOINT, Example, TrainOptions, featurise, new_config, read_jsonl, save_model, train

log = logging.getLogger(__name__)

FEATURES_VERSION = 3  # bump when featurise() changes what it makes of the same inputs
VALIDATION_PER_EPOCH = 128  # held-out examples scored after each epoch (loss and BLEU); all are scored at the end
# The recipe's sizes: the replies are bank phrasings chosen by the decision, so a small model suffices, and it
# must train on 2 CPU cores (about 1M parameters besides the 4096 x 128 embedding).
SIZES = {"d_model": 128, "heads": 4, "text_layers": 1, "decoder_layers": 2, "ffn_dim": 512}
MAX_TEXT = 96  # context (and decision) tokens kept: the newest context tokens (the customer's last words), the first decision ones
MAX_REPLY = 128  # reply tokens the model can write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="?", type=Path,
                        help="training JSONL (format: models/train.py); default: the set generated from the domain")
    parser.add_argument("--out", type=Path, required=True, help="output folder: serve it with PARLEY_DECODER=fused:OUT")
    parser.add_argument("--val", type=Path, help="validation JSONL (default: DATA's heldout split, else every 10th)")
    parser.add_argument("--dialogues", type=int, default=None, help="dialogues to generate (default: the builder's)")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".cache" / "parley" / "training",
                        help="where the generated set is cached")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    parser.add_argument("--init", help="start from this fused checkpoint instead of a new model")
    parser.add_argument("--eval-only", action="store_true", help="score the model in OUT on the held-out split")
    parser.add_argument("--tokenizer", default="learn",
                        help="'learn' (a BPE learnt from the data), 'default' (SmolLM2's), or an HF folder or id")
    parser.add_argument("--vocab-size", type=int, default=4096, help="of a learnt tokenizer")
    parser.add_argument("--text-only", action="store_true",
                        help="leave out image and audio features (the decision text still names their evidence)")
    parser.add_argument("--speech-model", default="default", help="as PARLEY_SPEECH_MODEL (serve with the same)")
    parser.add_argument("--vision-backbone", default="patches",
                        help="'patches' (built in), a ViT/CLIP/SigLIP id or folder (serve with the same "
                             "PARLEY_VISION_BACKBONE), or 'none'")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--d-model", type=int, default=SIZES["d_model"])
    parser.add_argument("--heads", type=int, default=SIZES["heads"])
    parser.add_argument("--ffn-dim", type=int, default=SIZES["ffn_dim"])
    parser.add_argument("--text-layers", type=int, default=SIZES["text_layers"])
    parser.add_argument("--decoder-layers", type=int, default=SIZES["decoder_layers"])
    defaults = TrainOptions()
    for name in ("epochs", "batch_size", "grad_accum", "lr", "max_steps", "checkpoint_every", "seed"):
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--only-projectors", action="store_true", help="freeze the decoder too")


def run(args: argparse.Namespace) -> None:
    from models.registry import resolve_placement

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    placement = resolve_placement(args.device)
    data = args.data or _generated(args)
    examples = read_jsonl(data)
    training, heldout = _split(examples, read_jsonl(args.val) if args.val else None)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.eval_only:
        _report(args, data, training, heldout, train_s=None, command=sys.argv)
        return
    if args.text_only:
        training, heldout = _without_media(training), _without_media(heldout)
    speech, vision = _encoders(args, training + heldout, placement)
    model, tokenizer = _model(args, training, speech, vision)
    model.to(placement.device)  # type: ignore[arg-type]  # transformers' wrapper of `to` is typed as taking a model
    items = _featurised(args.out, "train", training, tokenizer, model, vision, speech)
    check = _featurised(args.out, "heldout", heldout[:VALIDATION_PER_EPOCH], tokenizer, model, vision, speech)
    log.info("%d training and %d held-out examples; the model has %d parameters", len(items), len(heldout),
             sum(p.numel() for p in model.parameters()))
    options = TrainOptions(**{name: getattr(args, name) for name in (
        "epochs", "batch_size", "grad_accum", "lr", "max_steps", "checkpoint_every", "seed", "only_projectors")})
    started = time.perf_counter()
    history = train(model, items, options=options, val_items=check, tokenizer=tokenizer, out_dir=args.out,
                    resume=args.resume)
    train_s = time.perf_counter() - started
    save_model(model.half(), tokenizer, args.out)  # half the bytes; served in the placement's dtype
    log.info("trained in %.0f s; last epoch: %s", train_s, json.dumps(history[-1] if history else {}))
    _report(args, data, training, heldout, train_s=train_s, command=sys.argv)


def _generated(args: argparse.Namespace) -> Path:
    from app.dialogue.dataset import build

    sizes = {"dialogues": args.dialogues} if args.dialogues else {}
    return build(args.data_dir, seed=args.seed, **sizes)


def _split(examples: list[Example], val: list[Example] | None) -> tuple[list[Example], list[Example]]:
    """(training, held-out): the data's own split when it has one, else every 10th example held out."""
    if val is not None:
        return [e for e in examples if e.split != "heldout"] or examples, val
    heldout = [e for e in examples if e.split == "heldout"]
    if heldout:
        return [e for e in examples if e.split != "heldout"], heldout
    return [e for i, e in enumerate(examples) if i % 10] or examples, examples[::10]


def _without_media(examples: list[Example]) -> list[Example]:
    from dataclasses import replace

    return [replace(e, images=(), audio=None) for e in examples]


def _encoders(args: argparse.Namespace, examples: list[Example], placement):
    """The frozen speech encoder and image featuriser the data needs (None where it has no such media)."""
    from models.speech import load_speech_encoder
    from models.vision import load_image_featuriser

    cache = Path.home() / ".cache" / "parley" / "models"
    speech = load_speech_encoder(args.speech_model, placement=placement, offline=True, cache_dir=cache) \
        if any(e.audio for e in examples) else None
    vision = load_image_featuriser(args.vision_backbone, placement=placement, offline=True) \
        if any(e.images for e in examples) and args.vision_backbone != "none" else None
    return speech, vision


def _model(args: argparse.Namespace, training: list[Example], speech, vision) -> tuple[FusedSeq2Seq, Any]:
    from transformers import AutoTokenizer

    from models.registry import default_decoder, resolve_source

    if args.init or args.resume and (args.out / CHECKPOINT).exists():
        source = args.init or str(args.out / CHECKPOINT)
        return FusedSeq2Seq.from_pretrained(source, dtype=torch.float32), AutoTokenizer.from_pretrained(source)
    tokenizer: Any
    if args.tokenizer == "learn":
        from models.reply_tokenizer import build_tokenizer

        texts = [t for e in training for t in (e.decision, e.text, e.reply, *(m["content"] for m in e.context))]
        names = {f"[{name}]" for e in training for name in (*e.values, *e.required)}
        tokenizer = build_tokenizer(texts, names, vocab_size=args.vocab_size)
    else:
        cache = Path.home() / ".cache" / "parley" / "models"
        tokenizer = AutoTokenizer.from_pretrained(
            resolve_source(args.tokenizer, default=lambda: default_decoder(cache)), local_files_only=True)
    config = new_config(tokenizer, d_model=args.d_model, n_heads=args.heads, ffn_dim=args.ffn_dim,
                        text_layers=args.text_layers, decoder_layers=args.decoder_layers,
                        max_text_positions=MAX_TEXT, max_target_positions=MAX_REPLY,
                        image_dim=vision.feature_dim if vision else 0, audio_dim=speech.feature_dim if speech else 0,
                        image_features=args.vision_backbone if vision else "",
                        audio_features=args.speech_model if speech else "")
    return FusedSeq2Seq(config), tokenizer


def _featurised(out: Path, name: str, examples: list[Example], tokenizer, model: FusedSeq2Seq, vision, speech):
    """featurise(), cached in OUT by a hash of the examples, the tokenizer, the sizes and the encoders."""
    key = hashlib.sha256(json.dumps([
        FEATURES_VERSION, [repr(e) for e in examples], tokenizer.backend_tokenizer.to_str(),
        model.config.max_text_positions, model.config.max_target_positions,
        model.config.image_features, model.config.audio_features]).encode()).hexdigest()[:16]
    path = out / f"features-{name}-{key}.pt"
    if path.exists():
        log.info("features of %d %s examples from %s", len(examples), name, path)
        return torch.load(path, weights_only=False)
    items = featurise(examples, tokenizer, config=model.config, image_featuriser=vision, speech_encoder=speech)
    torch.save(items, path)
    return items


def _report(args: argparse.Namespace, data: Path, training: list[Example], heldout: list[Example], *,
            train_s: float | None, command: list[str]) -> dict:
    """Score OUT's model on the held-out split as the server decodes it; write heldout.json and README.md."""
    from models.fused_decoder import FusedSeq2SeqDecoder
    from models.registry import resolve_placement

    placement = resolve_placement(args.device, cpu_dtype="float32")
    decoder = FusedSeq2SeqDecoder.load(args.out, placement=placement)
    if not decoder.wants_features:
        heldout = _without_media(heldout)
    speech, vision = _encoders(args, heldout, placement)
    items = _featurised(args.out, "heldout-all", heldout, decoder.tokenizer, decoder.model, vision, speech)
    started = time.perf_counter()
    replies = decoder.write_all(items, max_new_tokens=decoder.model.config.max_target_positions)
    decode_s = time.perf_counter() - started
    act_of = ActOf([e.reply for e in training], [e.act or "" for e in training])
    results = scored(replies, heldout)
    metrics = {"all": score(results, act_of)}
    for kind in sorted({e.holdout for e in heldout if e.holdout}):
        metrics[kind] = score([s for s, e in zip(results, heldout, strict=True) if e.holdout == kind], act_of)
    result = {"metrics": metrics, "decode_s_per_reply": round(decode_s / max(1, len(heldout)), 4),
              "examples": [{"id": e.id, "act": e.act, "reply": r, "reference": e.reply}
                           for e, r in list(zip(heldout, replies, strict=True))[:40]]}
    (args.out / "heldout.json").write_text(json.dumps(result, indent=1))
    (args.out / "README.md").write_text(_model_card(args, data, training, heldout, metrics, train_s, command, decoder))
    log.info("held-out: %s", json.dumps(metrics["all"]))
    return result


def _model_card(args, data: Path, training: list[Example], heldout: list[Example], metrics: dict,
                train_s: float | None, command: list[str], decoder) -> str:
    config = decoder.model.config
    weights = args.out / "model.safetensors"
    stats = data.parent / "stats.json"
    rows = "\n".join(f"| {name} | {m['n']} | {m['slot_error_rate']:.2%} | {m['act_accuracy']:.2%} | {m['bleu']:.1f} "
                     f"| {m['rouge_l']:.3f} | {m['distinct_2']:.3f} | {m['kept']:.2%} |" for name, m in metrics.items())
    recipe = f"`{stats.name}` of the generated set:\n\n```json\n{stats.read_text()}\n```\n" if stats.exists() else ""
    return f"""# FusedSeq2Seq reply model (Parley)

Writes delexicalised replies ("Order [order_id] is [status].") for the policy's decision; the server fills
the placeholders from the decision's values, so every fact is copied, never generated, and a reply that
leaves out a required fact or names one the decision lacks is replaced by the policy's own wording.
Decoding itself keeps the facts exact: it never picks a placeholder the decision has no value for, nor the
end of the reply while a required one is unwritten (FusedSeq2Seq.step).

- Memory: the decision as tokens, the dialogue (newest {config.max_text_positions} tokens), each with its
  type embedding{"; image and audio features" if config.image_dim or config.audio_dim else
  "; trained text-only (image and audio evidence reaches it through the decision text)"}. The decoder's
  input at each position also carries the required facts not yet written (their placeholder embeddings).
- Sizes: d_model {config.d_model}, {config.n_heads} heads, FFN {config.ffn_dim}, {config.text_layers} encoder and
  {config.decoder_layers} decoder layers, vocabulary {config.vocab_size} (byte-level BPE learnt from the data,
  placeholders as whole tokens), {sum(p.numel() for p in decoder.model.parameters()):,} parameters;
  weights stored as float16 safetensors ({weights.stat().st_size / 2**20:.1f} MiB).
- Data: `{data}` — {len(training)} training turns, {len(heldout)} held-out turns
  (held out by phrasing, by slot values and by dialogue flow: app/dialogue/dataset.py).
- Command: `{" ".join(["parley", *command[1:]]) if command else "parley train"}`; seed {args.seed};
  {f"{train_s / 60:.1f} min of training" if train_s is not None else "training time not recorded"}
  on {platform.machine()} ({torch.get_num_threads()} threads).

{recipe}
## Held-out metrics (greedy, as served)

| split | n | slot error | act accuracy | BLEU | ROUGE-L | distinct-2 | model wording kept |
|---|---|---|---|---|---|---|---|
{rows}

Slot error = (missing + wrong + invented) / required placeholders. Act accuracy: the act of the nearest
training reply. BLEU and ROUGE-L against the response bank's reply for the same turn. Kept: the reply
fills, states every required fact and passes the server's acceptance check (no action claimed that did
not run, no refusal), so the server sends it as written.
"""
