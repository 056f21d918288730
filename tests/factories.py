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
