"""A small tokenizer for the FusedSeq2Seq, trained on the data it reads and writes.

SmolLM2's 49k-token vocabulary would be most of a small model's weights (49k x 256 = 12.6M parameters) for
replies that use a few thousand words. A byte-level BPE learnt from the training text keeps any input
encodable and decodes exactly what it encoded; each [placeholder] is one whole token, so a reply names a
fact in one step and the pipeline finds it intact in the stream.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, START, END = "<pad>", "<s>", "</s>"


def build_tokenizer(texts: Iterable[str], placeholders: Iterable[str], *, vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """A byte-level BPE of about `vocab_size` tokens learnt from `texts`, with each of `placeholders`
    ("[order_id]", ...) as one token, and pad / start / end tokens."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, START, END], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(texts, trainer)
    # Not special: decode(skip_special_tokens=True) keeps them. Not normalised: matched exactly as written.
    bpe.add_tokens([AddedToken(p, normalized=False, single_word=False) for p in sorted(set(placeholders))])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token=PAD, bos_token=START, eos_token=END)
