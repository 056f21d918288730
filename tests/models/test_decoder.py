import torch

from models.decoder import CausalLMDecoder
from models.registry import resolve_placement
from tests.factories import tiny_causal_lm

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what was my order number?"}]


def load(tmp_path):
    return CausalLMDecoder.load(str(tiny_causal_lm(tmp_path / "lm")), placement=resolve_placement("cpu"), offline=True)


def test_stream_matches_greedy_generate(tmp_path):
    decoder = load(tmp_path)
    pieces = list(decoder.stream(MESSAGES, max_new_tokens=12))
    ids = decoder.prompt_ids(MESSAGES)
    with torch.inference_mode():
        out = decoder.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                     eos_token_id=sorted(decoder.stop_ids), pad_token_id=decoder.tokenizer.pad_token_id)
    expected = decoder.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert len(pieces) >= 1
    assert "".join(pieces) == expected


def test_stream_respects_token_budget(tmp_path):
    decoder = load(tmp_path)
    short = "".join(decoder.stream(MESSAGES, max_new_tokens=2))
    longer = "".join(decoder.stream(MESSAGES, max_new_tokens=10))
    assert longer.startswith(short)
    assert len(decoder.tokenizer(short)["input_ids"]) <= 2


def test_prompt_is_chat_formatted_and_truncated(tmp_path):
    decoder = load(tmp_path)
    ids = decoder.prompt_ids(MESSAGES)
    text = decoder.tokenizer.decode(ids[0])
    assert text.endswith("<|im_start|>assistant\n")
    huge = [{"role": "user", "content": "order " * 5000}]
    assert decoder.prompt_ids(huge).shape[1] <= 1536


def test_long_history_drops_old_turns_before_the_system_message(tmp_path):
    decoder = load(tmp_path)
    messages = [{"role": "system", "content": "FACTS order A7Q-4412"}]
    messages += [{"role": "user", "content": "old turn " * 300} for _ in range(4)]
    messages.append({"role": "user", "content": "what was my order number?"})
    text = decoder.tokenizer.decode(decoder.prompt_ids(messages)[0])
    assert "FACTS order A7Q-4412" in text and text.rstrip().endswith("assistant")
    assert len(decoder.prompt_ids(messages)[0]) <= 1536
