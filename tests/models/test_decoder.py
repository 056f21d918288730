import torch

from models.decoder import GREEDY, CausalLMDecoder, ReplyContext, Sampling, TextStream, pick_tokens, row_sampler
from models.registry import resolve_placement
from tests.factories import tiny_causal_lm

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what was my order number?"}]
OTHER = [{"role": "user", "content": "hello, my lamp arrived broken and i would like a refund please"}]


def load(tmp_path) -> CausalLMDecoder:
    return CausalLMDecoder.load(str(tiny_causal_lm(tmp_path / "lm")), placement=resolve_placement("cpu"), offline=True)


def greedy(decoder: CausalLMDecoder, messages, steps: int) -> list[int]:
    """Reference: transformers' own generate, one sequence, no padding."""
    ids = torch.tensor([decoder.prompt_ids(messages)])
    with torch.inference_mode():
        out = decoder.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=steps, do_sample=False,
                                     min_new_tokens=steps, pad_token_id=decoder.pad_id)
    return out[0, ids.shape[1]:].tolist()


def run(decoder: CausalLMDecoder, batch, steps: int) -> list[list[int]]:
    tokens = [[t] for t in batch.next_ids.tolist()]
    for _ in range(steps - 1):
        batch = decoder.step(batch)
        for row, t in zip(tokens, batch.next_ids.tolist(), strict=True):
            row.append(t)
    return tokens


def test_prefill_and_steps_match_greedy_generate(tmp_path):
    decoder = load(tmp_path)
    [tokens] = run(decoder, decoder.prefill([decoder.prompt_ids(MESSAGES)]), 10)
    assert tokens == greedy(decoder, MESSAGES, 10)


def test_prompts_of_different_lengths_decode_as_they_would_alone(tmp_path):
    decoder = load(tmp_path)
    short, long = decoder.prompt_ids(MESSAGES), decoder.prompt_ids(OTHER)
    assert len(short) != len(long)
    together = run(decoder, decoder.prefill([short, long]), 8)
    assert together == [greedy(decoder, MESSAGES, 8), greedy(decoder, OTHER, 8)]


def test_a_sequence_joining_a_running_batch_decodes_as_it_would_alone(tmp_path):
    decoder = load(tmp_path)
    running = decoder.prefill([decoder.prompt_ids(MESSAGES)])
    first = [running.next_ids.item()]
    for _ in range(3):  # the first sequence is 4 tokens in when the second one joins
        running = decoder.step(running)
        first.append(running.next_ids.item())
    fresh = decoder.prefill([decoder.prompt_ids(OTHER)])
    merged = decoder.merge(running, fresh)
    assert merged.size == 2 and merged.mask.shape[1] == max(running.mask.shape[1], fresh.mask.shape[1])
    rest = run(decoder, merged, 6)
    assert first + rest[0][1:] == greedy(decoder, MESSAGES, 9)
    assert rest[1] == greedy(decoder, OTHER, 6)


def test_select_drops_finished_rows_and_unused_padding(tmp_path):
    decoder = load(tmp_path)
    short, long = decoder.prompt_ids(MESSAGES), decoder.prompt_ids(OTHER)
    batch = decoder.step(decoder.prefill([long, short]))
    narrowed = decoder.select(batch, [1])  # the long prompt leaves: its padding columns go with it
    assert narrowed.size == 1 and narrowed.mask.shape[1] == len(short) + 1
    assert int(narrowed.mask.sum()) == len(short) + 1
    tokens = [narrowed.next_ids.item()]
    for _ in range(4):
        narrowed = decoder.step(narrowed)
        tokens.append(narrowed.next_ids.item())
    assert tokens == greedy(decoder, MESSAGES, 6)[1:]


def test_text_stream_holds_back_incomplete_characters(tmp_path):
    decoder = load(tmp_path)
    ids = decoder.tokenizer("café ✓ A7Q-4412", add_special_tokens=False)["input_ids"]
    text = TextStream(decoder.tokenizer)
    pieces = [text.push(i) for i in ids]
    assert "".join(pieces) == "café ✓ A7Q-4412"
    assert all("\ufffd" not in piece for piece in pieces)


def test_prompt_is_chat_formatted_and_truncated(tmp_path):
    decoder = load(tmp_path)
    text = decoder.tokenizer.decode(decoder.prompt_ids(MESSAGES))
    assert text.endswith("<|im_start|>assistant\n")
    huge = [{"role": "user", "content": "order " * 5000}]
    assert len(decoder.prompt_ids(huge)) <= 1536


def test_a_reply_with_an_opening_continues_it_and_its_text_starts_with_it(tmp_path):
    decoder = load(tmp_path)
    context = ReplyContext(MESSAGES, opening="Your order A7Q-4412")
    text = decoder.tokenizer.decode(decoder.prepare(context))
    assert text.endswith("<|im_start|>assistant\nYour order A7Q-4412")  # the same message, not a new one
    assert text.count("<|im_start|>assistant") == 1
    stream = decoder.text_stream(context)
    ids = decoder.tokenizer(" is on its way", add_special_tokens=False)["input_ids"]
    pieces = [stream.push(i) for i in ids]
    assert pieces[0].startswith("Your order A7Q-4412 ") and "".join(pieces) == "Your order A7Q-4412 is on its way"


def test_long_history_drops_old_turns_before_the_system_message(tmp_path):
    decoder = load(tmp_path)
    messages = [{"role": "system", "content": "FACTS order A7Q-4412"}]
    messages += [{"role": "user", "content": "old turn " * 300} for _ in range(4)]
    messages.append({"role": "user", "content": "what was my order number?"})
    ids = decoder.prompt_ids(messages)
    text = decoder.tokenizer.decode(ids)
    assert "FACTS order A7Q-4412" in text and text.rstrip().endswith("assistant")
    assert len(ids) <= 1536


def test_int8_placement_quantises_linear_layers_and_still_batches_exactly(tmp_path):
    placement = resolve_placement("cpu", cpu_dtype="int8")
    assert placement.describe() == "cpu/int8"
    decoder = CausalLMDecoder.load(str(tiny_causal_lm(tmp_path / "lm")), placement=placement, offline=True)
    assert type(decoder.model.lm_head).__module__.startswith("torch.ao.nn.quantized.dynamic")
    short, long = decoder.prompt_ids(MESSAGES), decoder.prompt_ids(OTHER)
    together = run(decoder, decoder.prefill([short, long]), 6)
    assert together == [run(decoder, decoder.prefill([p]), 6)[0] for p in (short, long)]


def sampled(decoder: CausalLMDecoder, prompts, samplings, steps: int) -> list[list[int]]:
    """`steps` tokens per prompt, decoded in one batch, each row picking with its own sampling."""
    samplers = [row_sampler(sampling, "cpu") for sampling in samplings]
    batch = decoder.prefill(prompts, samplers)
    tokens = [[t] for t in batch.next_ids.tolist()]
    for _ in range(steps - 1):
        batch = decoder.step(batch, samplers)
        for row, t in zip(tokens, batch.next_ids.tolist(), strict=True):
            row.append(t)
    return tokens


def test_a_seeded_row_samples_the_same_tokens_alone_or_beside_others_and_greedy_rows_stay_greedy(tmp_path):
    decoder = load(tmp_path)
    short, long = decoder.prompt_ids(MESSAGES), decoder.prompt_ids(OTHER)
    hot = Sampling(temperature=1.5, seed=11)
    [alone] = sampled(decoder, [long], [hot], 12)
    greedy_row, hot_row = sampled(decoder, [short, long], [GREEDY, hot], 12)
    assert hot_row == alone  # its own generator: the neighbours draw nothing from it
    assert greedy_row == greedy(decoder, MESSAGES, 12)  # token for token as the all-greedy path
    assert alone != greedy(decoder, OTHER, 12)  # at temperature 1.5 a random tiny LM does not follow its argmax
    others = [sampled(decoder, [long], [Sampling(temperature=1.5, seed=seed)], 12)[0] for seed in (12, 13)]
    assert any(tokens != alone for tokens in others)


def test_temperature_zero_is_greedy_and_a_tiny_top_p_keeps_only_the_likeliest_token(tmp_path):
    decoder = load(tmp_path)
    prompt = decoder.prompt_ids(OTHER)
    assert row_sampler(Sampling(temperature=0, seed=3), "cpu") is None
    [nucleus] = sampled(decoder, [prompt], [Sampling(temperature=2.0, top_p=1e-6, seed=5)], 10)
    assert nucleus == greedy(decoder, OTHER, 10)


def test_pick_tokens_draws_only_inside_the_nucleus():
    logits = torch.tensor([[4.0, 3.0, 0.0, -1.0]])  # probabilities ~ 0.72, 0.26, 0.01, 0.004
    sampler = row_sampler(Sampling(temperature=1.0, top_p=0.9, seed=0), "cpu")
    drawn = {int(pick_tokens(logits, [sampler])[0]) for _ in range(200)}
    assert drawn == {0, 1}  # the two likeliest tokens make up the first 90%; the rest are never drawn


def test_a_prefill_fed_a_few_columns_at_a_time_decodes_as_one_fed_at_once(tmp_path):
    decoder = load(tmp_path)
    short, long = decoder.prompt_ids(MESSAGES), decoder.prompt_ids(OTHER)
    started, passes = decoder.start_prefill([short, long]), 1
    while (batch := decoder.advance(started, 5)) is None:
        passes += 1
    assert passes == -(-len(long) // 5)  # the longer prompt's columns, five per pass
    assert run(decoder, batch, 8) == [greedy(decoder, MESSAGES, 8), greedy(decoder, OTHER, 8)]
