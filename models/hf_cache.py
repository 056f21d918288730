"""The name transformers gives the KV cache, as a forward() argument and as an output field.

transformers 5.24 renamed `past_key_values` to `cache`: generate() now hands a model its cache as `cache=`,
and a model that only looks for `past_key_values` builds a new, empty cache at every step while being fed
one token at a time (FusedSeq2Seq then wrote one constant token). The old name still works on 5.24, with a
deprecation warning. Parley runs on both sides of the rename: the lock file pins one, `make upgrade` may
resolve the other.
"""

from transformers.modeling_outputs import Seq2SeqLMOutput

CACHE = "cache" if "cache" in Seq2SeqLMOutput.__dataclass_fields__ else "past_key_values"
