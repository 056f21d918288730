"""Speculative decoding: draft tokens verified in one pass give exactly the tokens of plain greedy steps."""

from pathlib import Path

import pytest
import torch

from models.decoder import CausalLMDecoder
from models.prompt_lookup import PromptLookup
from models.registry import default_decoder, resolve_placement
from tests.models.test_decoder import MESSAGES, OTHER, greedy, load


def speculate(decoder: CausalLMDecoder, prompts: list[list[int]], drafter, steps: int) -> tuple[list[list[int]], list]:
    """At least `steps` tokens per prompt in one batch; `drafter(row, tokens so far)` gives each row's draft.
    -> (tokens per row, per pass the number of tokens each row kept)."""
    batch = decoder.prefill(prompts)
    tokens = [[t] for t in batch.next_ids.tolist()]
    kept_per_pass = []
    while min(len(t) for t in tokens) < steps:
        batch, chosen = decoder.verify(batch, [drafter(row, tokens[row]) for row in range(batch.size)])
        kept_per_pass.append([len(c) for c in chosen])
        for row, new in zip(tokens, chosen, strict=True):
            row += new
    return [t[:steps] for t in tokens], kept_per_pass


def oracle(reference: list[int], *, wrong_at: int | None):
    """Drafts of 4 tokens taken from the true continuation, the `wrong_at`-th of them corrupted."""
    def draft(_row: int, so_far: list[int]) -> list[int]:
        guess = reference[len(so_far):len(so_far) + 4]
        if wrong_at is not None and wrong_at < len(guess):
            guess[wrong_at] = (guess[wrong_at] + 1) % 200
        return guess
    return draft


@pytest.mark.parametrize("wrong_at", [None, 0, 2])
def test_verified_drafts_give_the_greedy_tokens(tmp_path, wrong_at):
    decoder = load(tmp_path)
    reference = greedy(decoder, MESSAGES, 24)
    tokens, kept = speculate(decoder, [decoder.prompt_ids(MESSAGES)], oracle(reference, wrong_at=wrong_at), 16)
    assert tokens[0] == reference[:16]
    expected_per_pass = {None: 5, 0: 1, 2: 3}[wrong_at]  # the draft's right tokens, then the model's own
    assert kept[0] == [expected_per_pass]


def test_rows_that_keep_different_numbers_of_tokens_each_decode_as_alone(tmp_path):
    decoder = load(tmp_path)
    references = [greedy(decoder, MESSAGES, 40), greedy(decoder, OTHER, 40)]
    drafters = [oracle(references[0], wrong_at=None), oracle(references[1], wrong_at=1)]
    prompts = [decoder.prompt_ids(MESSAGES), decoder.prompt_ids(OTHER)]
    assert len(prompts[0]) != len(prompts[1])
    tokens, kept = speculate(decoder, prompts, lambda row, so_far: drafters[row](row, so_far), 20)
    assert kept[0] == [5, 2]
    assert tokens == [references[0][:20], references[1][:20]]


def test_a_row_joining_a_batch_with_masked_rejections_and_a_row_leaving_stay_exact(tmp_path):
    decoder = load(tmp_path)
    first, second = decoder.prompt_ids(MESSAGES), decoder.prompt_ids(OTHER)
    reference = greedy(decoder, MESSAGES, 40)
    running = decoder.prefill([first])
    tokens = [running.next_ids.item()]
    for _ in range(3):  # rejected drafts leave masked columns in the running row's cache
        running, [chosen] = decoder.verify(running, [oracle(reference, wrong_at=1)(0, tokens)])
        tokens += chosen
    merged = decoder.merge(running, decoder.prefill([second]))
    other = [merged.next_ids[1].item()]
    for _ in range(6):
        merged, chosen = decoder.verify(merged, [oracle(reference, wrong_at=3)(0, tokens), []])
        tokens += chosen[0]
        other += chosen[1]
    alone = decoder.select(merged, [1])
    for _ in range(3):
        alone = decoder.step(alone)
        other.append(alone.next_ids.item())
    assert tokens == reference[:len(tokens)]
    assert other == greedy(decoder, OTHER, len(other))


def test_prompt_lookup_proposes_what_followed_the_latest_match():
    lookup = PromptLookup([1, 2, 3, 4, 9, 1, 2, 3, 5, 6])
    lookup.extend([1, 2, 3])
    assert lookup.propose(3) == [5, 6, 1]  # "1 2 3" last came before "5 6"
    lookup.extend([5])
    assert lookup.propose(8) == [6, 1, 2, 3, 5]  # "2 3 5": up to the end of what is known
    assert lookup.propose(0) == []
    lookup.extend([7])
    assert lookup.propose(4) == []  # "3 5 7" occurs nowhere earlier (a shorter match is not trusted)


def test_packaged_smollm2_speculates_the_plain_greedy_reply():
    cache = Path.home() / ".cache" / "parley" / "models"  # converted here on a fresh machine, as on first start
    torch.set_num_threads(1)
    decoder = CausalLMDecoder.load(str(default_decoder(cache)), placement=resolve_placement("cpu", cpu_dtype="float32"),
                                   offline=True)
    messages = [{"role": "user", "content": 'Repeat this sentence: "The quick brown fox jumps over the lazy dog."'}]
    prompt = decoder.prompt_ids(messages)
    reference = greedy(decoder, messages, 9)  # the repeated sentence; the reference never stops, so end before the stop
    tokens, kept = speculate(decoder, [prompt], lambda _row, so_far: PromptLookup(prompt + so_far).propose(6), 9)
    assert tokens[0] == reference
    assert max(k[0] for k in kept) > 1  # some draft was accepted: the reply copies the prompt
