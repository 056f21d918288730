"""Tiny randomly initialised checkpoints, saved like real ones so tests load them through
the production loaders. They exercise architecture and plumbing, not quality."""

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CORPUS = [
    "hello how can i help you today",
    "my lamp arrived broken and the order number is A7Q-4412",
    "what was my order number? your order number is 4512",
    "i would like a refund for my headphones please",
    "thank you goodbye",
] * 4

# ChatML, the template SmolLM2-Instruct uses.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_bpe(special: list[str], vocab_size: int = 300) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer


def tiny_causal_lm(directory: Path, *, seed: int = 0) -> Path:
    """A 2-layer Llama with a ChatML byte-level BPE tokenizer."""
    torch.manual_seed(seed)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_byte_bpe(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
        bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def tiny_sentence_encoder(directory: Path, *, seed: int = 0) -> Path:
    """A 2-layer BERT with a byte-level BPE tokenizer."""
    torch.manual_seed(seed)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_byte_bpe(["[PAD]", "[UNK]"]), pad_token="[PAD]", unk_token="[UNK]"
    )
    config = BertConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=256, pad_token_id=fast.pad_token_id,
    )
    BertModel(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


# Whisper's special tokens, in the order the real vocabulary has them (after the BPE pieces).
WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                    "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]


def tiny_whisper(directory: Path, *, seed: int = 0) -> Path:
    """A 2+2-layer Whisper (d_model 32) with a byte-level BPE vocab.json/merges.txt and the real feature extractor."""
    import json

    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    words = _byte_bpe([], vocab_size=300)  # the 256 byte symbols plus a few merges learnt from CORPUS
    spec = json.loads(words.to_str())["model"]
    (directory / "vocab.json").write_text(json.dumps(spec["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["merges"]]
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = WhisperTokenizer.from_pretrained(directory)
    tokenizer.add_special_tokens({"additional_special_tokens": WHISPER_SPECIALS})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in WHISPER_SPECIALS}
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)
    config = WhisperConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        num_mel_bins=80, max_source_positions=1500, max_target_positions=64,
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
        no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=True, max_length=64,
        lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def tiny_vit(directory: Path, *, seed: int = 0) -> Path:
    """A 2-layer ViT (32x32 images, 8x8 patches -> 16 patches + CLS) with its image processor."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=4)
    ViTModel(config).save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def tiny_captioner(directory: Path, *, seed: int = 0) -> Path:
    """A VisionEncoderDecoder: tiny ViT encoder + 2-layer GPT-2 decoder, byte-level BPE tokenizer."""
    from transformers import (GPT2Config, GPT2LMHeadModel, ViTConfig, ViTImageProcessor, ViTModel,
                              VisionEncoderDecoderModel)

    torch.manual_seed(seed)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_byte_bpe(["<|endoftext|>"]),
        bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
    )
    encoder = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=2, num_attention_heads=4))
    decoder = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(fast), n_embd=32, n_layer=2, n_head=4, n_positions=64, add_cross_attention=True,
        is_decoder=True, bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
    ))
    model = VisionEncoderDecoderModel(encoder=encoder, decoder=decoder)
    model.config.decoder_start_token_id = fast.bos_token_id
    model.config.pad_token_id = fast.pad_token_id
    model.config.eos_token_id = fast.eos_token_id
    model.generation_config.decoder_start_token_id = fast.bos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


def wav_header(frames: int, *, rate: int = 16000, channels: int = 1, data: bytes = b"") -> bytes:
    """A 16-bit PCM RIFF/WAVE header declaring `frames` frames, followed by `data` (which may be shorter)."""
    import struct

    block = channels * 2
    size = min(frames * block, 0xFFFFFFFE)  # the data chunk size is 32-bit
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, 16)  # PCM, 16 bits per sample
    return (b"RIFF" + struct.pack("<I", min(36 + size, 0xFFFFFFFF)) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data)


def tiny_wav2vec2_ctc(directory: Path, *, seed: int = 0) -> Path:
    """A 2-layer wav2vec2 CTC head over a character vocabulary (blank = <pad>)."""
    import json

    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2} | {ch: 3 + i for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz0123456789")}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), pad_token="<pad>", unk_token="<unk>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True)
    config = Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, pad_token_id=0, do_stable_layer_norm=True, feat_extract_norm="layer",
    )
    Wav2Vec2ForCTC(config).save_pretrained(directory)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def tiny_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (about 300 tokens) with start, end and pad tokens and two [placeholders] as
    whole tokens (as models/reply_tokenizer.py learns them), saved to `directory`."""
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_byte_bpe(["<pad>", "<s>", "</s>", "[order_id]", "[email]"]), bos_token="<s>",
        eos_token="</s>", pad_token="<pad>",
    )
    fast.save_pretrained(directory)
    return fast


def tiny_fused(directory: Path, *, image_dim: int, audio_dim: int = 512) -> Path:
    """A FusedSeq2Seq checkpoint (d_model 32) with random weights large enough that replies vary with the
    input; audio_dim 512 = Whisper base, the default speech encoder."""
    from models.fused import FusedSeq2Seq
    from models.train import new_config

    tokenizer = tiny_tokenizer(directory)
    config = new_config(tokenizer, d_model=32, n_heads=4, ffn_dim=64, text_layers=1, decoder_layers=2, dropout=0.0,
                        image_dim=image_dim, audio_dim=audio_dim, image_features="patches", audio_features="default")
    torch.manual_seed(0)
    model = FusedSeq2Seq(config)
    with torch.no_grad():  # larger random weights than the init, so greedy replies vary with the input
        for p in model.parameters():
            p.normal_(0, 0.5)
    model.save_pretrained(directory)
    return directory
