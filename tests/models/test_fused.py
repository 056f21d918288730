"""FusedSeq2Seq on a tiny config: shapes and masks, save/load, generate with and without the KV cache."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, TextIteratorStreamer

from models.hf_cache import CACHE
from models.fused import FusedConfig, FusedSeq2Seq, memory_size, pool_time, render_context
from models.train import Item, collate, new_config, read_jsonl
from tests.factories import tiny_tokenizer

CONFIG = dict(vocab_size=40, d_model=32, n_heads=4, ffn_dim=64, text_layers=1, decoder_layers=2, dropout=0.0,
              image_dim=12, audio_dim=8, audio_stride=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
              decoder_start_token_id=1)


def tiny(seed: int = 0, **overrides) -> FusedSeq2Seq:
    torch.manual_seed(seed)
    model = FusedSeq2Seq(FusedConfig(**(CONFIG | overrides))).eval()
    with torch.no_grad():  # larger random weights than the init, so greedy replies vary token by token
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


def inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 40, (3, 6), generator=g)
    attention = torch.ones(3, 6, dtype=torch.long)
    attention[1, 4:] = 0
    image_mask = torch.tensor([[1] * 5, [0] * 5, [1, 1, 1, 0, 0]])  # example 1 has no image
    audio_mask = torch.tensor([[1] * 7, [1] * 7, [0] * 7])  # example 2 has no audio
    return {"input_ids": ids, "attention_mask": attention,
            "image_features": torch.randn(3, 5, 12, generator=g), "image_mask": image_mask,
            "audio_features": torch.randn(3, 7, 8, generator=g), "audio_mask": audio_mask}


def test_memory_shapes_and_mask():
    model = tiny()
    out = model.get_encoder()(**inputs())
    M = memory_size(model.config, text=6, image=5, audio=7)  # 1 + 6 + 5 + ceil(7 / 2)
    assert out.last_hidden_state.shape == (3, M, 32) and out.attention_mask.shape == (3, M)
    text, image, audio = slice(1, 7), slice(7, 12), slice(12, 16)
    mask = out.attention_mask
    assert mask[:, 0].all()  # the memory-start slot is always there
    assert mask[1, text].tolist() == [True] * 4 + [False] * 2
    assert not mask[1, image].any() and mask[2, image].tolist() == [True] * 3 + [False] * 2
    assert not mask[2, audio].any() and mask[0, audio].all()


def test_masked_or_missing_modality_contributes_nothing():
    """Example 1's masked image and padded text must give the reply it gets with neither present."""
    model, batch = tiny(), inputs()
    full = model(**batch, decoder_input_ids=torch.tensor([[1, 5, 9]] * 3)).logits[1]
    alone = model(input_ids=batch["input_ids"][1:2, :4], audio_features=batch["audio_features"][1:2],
                  decoder_input_ids=torch.tensor([[1, 5, 9]])).logits[0]
    assert torch.allclose(full, alone, atol=1e-5)
    garbage = {**batch, "image_features": batch["image_features"].clone()}
    garbage["image_features"][1] = 1e3  # behind a zero mask: must change nothing
    assert torch.allclose(model(**garbage, decoder_input_ids=torch.tensor([[1, 5, 9]] * 3)).logits[1], full, atol=1e-5)
    other = {**batch, "image_features": batch["image_features"] + 1}  # an image that is there does count
    assert not torch.allclose(model(**other, decoder_input_ids=torch.tensor([[1, 5, 9]] * 3)).logits[0],
                              model(**batch, decoder_input_ids=torch.tensor([[1, 5, 9]] * 3)).logits[0])


def test_loss_ignores_padding_and_trains():
    model = tiny(0)
    model.train()
    labels = torch.tensor([[5, 6, 2], [7, 2, -100], [8, 9, 2]])
    loss = model(**inputs(), labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss) and model.encoder.image_proj.net[1].weight.grad.abs().sum() > 0


def test_generate_with_cache_equals_without():
    model = tiny(4)
    kw = dict(inputs(1), max_new_tokens=12, do_sample=False, min_new_tokens=12)
    cached, plain = model.generate(**kw, use_cache=True), model.generate(**kw, use_cache=False)
    assert cached.shape == (3, 13) and len(set(cached[0, 1:].tolist())) > 1  # not a constant reply
    assert torch.equal(cached, plain)


def test_fresh_weights_vary_and_different_inputs_give_different_logits():
    """The library's own init (no re-drawing as in tiny()): nothing constant, and the input matters."""
    torch.manual_seed(0)
    model = FusedSeq2Seq(FusedConfig(**CONFIG)).eval()
    for name, p in model.named_parameters():
        if p.dim() == 2 and name != "encoder.memory_start":
            assert p.std() > 0.01, f"{name} was left constant by the init"
    start = torch.tensor([[1]] * 3)
    first, second = model(**inputs(0), decoder_input_ids=start).logits, model(**inputs(1), decoder_input_ids=start).logits
    assert not torch.allclose(first, second)


def test_a_cached_step_equals_the_full_forward():
    """The cache goes in under the name this transformers' generate() uses, and is the one the step reads."""
    model, batch = tiny(3), inputs(3)
    full = model(**batch, decoder_input_ids=torch.tensor([[1, 5, 9]] * 3)).logits[:, -1]
    encoder_outputs = model.get_encoder()(**batch)
    first = model(encoder_outputs=encoder_outputs, decoder_input_ids=torch.tensor([[1, 5]] * 3), use_cache=True)
    step = model(encoder_outputs=encoder_outputs, decoder_input_ids=torch.tensor([[9]] * 3), use_cache=True,
                 **{CACHE: getattr(first, CACHE)})
    assert getattr(first, CACHE).get_seq_length() == 3
    assert torch.allclose(step.logits[:, -1], full, atol=1e-5)


def test_unsaid_facts_step_by_step_equal_the_full_forward():
    """The facts still to say condition every position, empty once written, the same in training's forward
    and in serving's steps; padding in `required` is no fact."""
    model, batch = tiny(4), inputs(4)
    required = torch.tensor([[7, 9], [7, 0], [0, 0]])  # row 0 needs tokens 7 and 9, row 1 only 7, row 2 none
    reply = torch.tensor([[1, 5, 7, 9, 6]] * 3)
    full = model(**batch, required_ids=required, decoder_input_ids=reply).logits  # (3, 5, V)
    memory = model.get_encoder()(**batch)
    state = model.start_steps(memory.last_hidden_state, memory.attention_mask, required)
    for position in range(reply.shape[1]):
        logits, state = model.step(reply[:, position], state)
        kept = logits.isfinite()  # the end token is held back while a fact is unsaid: test_steps_keep_facts_exact
        assert set((~kept).nonzero()[:, 1].tolist()) <= model.end_ids
        assert torch.allclose(logits[kept], full[:, position][kept], atol=1e-4), position
    assert state.unsaid.tolist() == [[False, False], [False, False], [False, False]]
    bare = model(**batch, decoder_input_ids=reply).logits
    assert torch.allclose(full[2], bare[2], atol=1e-5)  # nothing required: as if no list was given
    assert not torch.allclose(full[0, :3], bare[0, :3])  # unsaid facts change what comes next
    with pytest.raises(ValueError, match="start_steps/step"):  # generate()'s cache sees one token at a time
        first = model(encoder_outputs=memory, decoder_input_ids=reply[:, :2], use_cache=True)
        model(encoder_outputs=memory, decoder_input_ids=reply[:, 2:3], required_ids=required, use_cache=True,
              **{CACHE: getattr(first, CACHE)})


def test_steps_keep_facts_exact():
    """A row never gets a banned token (a placeholder its decision has no value for), nor the end token while a
    required fact is unsaid; once written, it may end."""
    model, batch = tiny(3), inputs(3)
    end = model.config.eos_token_id
    required = torch.tensor([[7], [0], [0]])  # row 0 must write token 7
    banned = torch.zeros(3, model.config.vocab_size, dtype=torch.bool)
    banned[1, [8, 9]] = True  # row 1 may not write tokens 8 and 9
    memory = model.get_encoder()(**batch)
    state = model.start_steps(memory.last_hidden_state, memory.attention_mask, required, banned)
    logits, state = model.step(torch.tensor([1, 1, 1]), state)
    assert logits[0, end] == float("-inf") and logits[1:, end].isfinite().all()
    assert (logits[1, [8, 9]] == float("-inf")).all() and logits[[0, 2]][:, [8, 9]].isfinite().all()
    assert logits.isfinite().sum(1).tolist() == [model.config.vocab_size - 1, model.config.vocab_size - 2,
                                                 model.config.vocab_size]
    logits, state = model.step(torch.tensor([7, 7, 7]), state)
    assert logits[:, end].isfinite().all()
    assert logits[1, 8] == float("-inf")  # banned for the whole reply


def test_save_load_round_trip_through_auto_classes(tmp_path):
    model = tiny(2)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, FusedSeq2Seq) and loaded.config.image_dim == 12 and loaded.config.audio_stride == 2
    assert loaded.lm_head.weight.data_ptr() == loaded.embed_tokens.weight.data_ptr()  # still tied
    kw = dict(inputs(2), max_new_tokens=8, do_sample=False)
    assert torch.equal(loaded.generate(**kw), model.generate(**kw))


def test_streamer_yields_the_generated_text(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path)
    torch.manual_seed(0)
    model = FusedSeq2Seq(new_config(tokenizer, d_model=32, n_heads=4, ffn_dim=64, text_layers=1, decoder_layers=1))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    ids = torch.tensor([tokenizer("hello how can i help")["input_ids"]])
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    out = model.eval().generate(input_ids=ids, max_new_tokens=10, do_sample=False, streamer=streamer)
    assert "".join(streamer) == tokenizer.decode(out[0, 1:], skip_special_tokens=True)


def test_wrong_feature_size_is_refused():
    with pytest.raises(AssertionError, match="image features are 7-d"):
        tiny().get_encoder()(torch.tensor([[5, 6]]), image_features=torch.zeros(1, 3, 7))
    with pytest.raises(ValueError, match="without audio features"):
        tiny(audio_dim=0).get_encoder()(torch.tensor([[5, 6]]), audio_features=torch.zeros(1, 3, 8))


def test_pool_time_is_a_masked_mean():
    feats = torch.arange(10, dtype=torch.float32).view(1, 5, 2)  # frames [0,1] [2,3] [4,5] [6,7] [8,9]
    pooled, mask = pool_time(feats, torch.tensor([[1, 1, 1, 0, 0]]), 2)
    assert pooled.shape == (1, 3, 2) and mask.tolist() == [[True, True, False]]
    assert pooled[0, 0].tolist() == [1, 2] and pooled[0, 1].tolist() == [4, 5]


def test_context_rendering_and_collate(tmp_path):
    text = render_context([{"role": "system", "content": "facts"}, {"role": "user", "content": "my  lamp\nbroke"},
                           {"role": "assistant", "content": "Sorry!"}])
    assert text == "user: my lamp broke\nassistant: Sorry!"
    config = FusedConfig(**CONFIG)
    batch = collate([Item([5, 6, 7], [8, 2], image=np.ones((4, 12), np.float32)), Item([5], [9, 9, 2])], config)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]] and batch["attention_mask"][1].tolist() == [1, 0, 0]
    assert batch["image_features"].shape == (2, 4, 12) and batch["image_mask"][1].sum() == 0
    assert "audio_features" not in batch and batch["labels"].tolist() == [[8, 2, -100], [9, 9, 2]]


def test_read_jsonl_resolves_media_and_reports_bad_lines(tmp_path):
    data = tmp_path / "set.jsonl"
    data.write_text('{"id": "a", "context": [{"role": "user", "text": "hi"}], "text": "see", "image": "m/a.png",'
                    ' "reply": "ok", "intent": "greeting", "slots": {"order_id": "A1"}}\n\n'
                    '{"text": "x", "audio": "m/b.wav", "reply": "y"}\n')
    first, second = read_jsonl(data)
    assert first.images == (tmp_path / "m/a.png",) and first.context == [{"role": "user", "content": "hi"}]
    assert first.modalities == ["text", "image"] and second.audio == tmp_path / "m/b.wav" and second.id == "3"
    data.write_text('{"text": "no reply"}\n')
    with pytest.raises(ValueError, match="set.jsonl:1"):
        read_jsonl(data)


def test_feature_check_names_the_setting_to_change():
    from models.fused_decoder import FeatureMismatch, check_features

    config = FusedConfig(**(CONFIG | {"image_features": "patches", "audio_features": "default"}))
    check_features(config, image_dim=12, audio_dim=8)
    with pytest.raises(FeatureMismatch,
                       match="12-d image features .* gives no features: set PARLEY_VISION_BACKBONE=patches"):
        check_features(config, image_dim=None, audio_dim=8)
    with pytest.raises(FeatureMismatch, match="8-d audio features .* gives 512-d features"):
        check_features(config, image_dim=12, audio_dim=512)
    check_features(FusedConfig(**(CONFIG | {"image_dim": 0})), image_dim=None, audio_dim=8)  # takes no images


def _decoder(tmp_path):
    from models.fused_decoder import FusedSeq2SeqDecoder
    from models.registry import resolve_placement

    tokenizer = tiny_tokenizer(tmp_path)
    torch.manual_seed(3)
    model = FusedSeq2Seq(new_config(tokenizer, d_model=32, n_heads=4, ffn_dim=64, text_layers=1, decoder_layers=1,
                                    image_dim=12, audio_dim=8, dropout=0.0))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    model.save_pretrained(tmp_path)
    decoder = FusedSeq2SeqDecoder.load(str(tmp_path), placement=resolve_placement("cpu"))
    decoder.check_encoders(image_dim=12, audio_dim=8)
    return decoder


def _context(rng: np.random.Generator, words: str, decision: str = "", *, images: int = 0, audio: bool = False,
             required: tuple[str, ...] = ()):
    from models.decoder import ReplyContext

    return ReplyContext([{"role": "system", "content": "facts"}, {"role": "user", "content": words}],
                        image_features=tuple(rng.normal(size=(3, 12)).astype(np.float32) for _ in range(images)),
                        audio_features=rng.normal(size=(5, 8)).astype(np.float32) if audio else None,
                        decision=decision, required=required)


def _greedy(decoder, batch, steps: int) -> list[list[int]]:
    """Each row's next tokens over `steps` steps (stop tokens included)."""
    tokens = [batch.next_ids.tolist()]
    for _ in range(steps - 1):
        batch = decoder.step(batch)
        tokens.append(batch.next_ids.tolist())
    return [list(row) for row in zip(*tokens, strict=True)]


def test_batched_rows_decode_as_each_alone(tmp_path):
    """Rows of different lengths, media and start times give the tokens each gives alone (greedy)."""
    decoder = _decoder(tmp_path)
    rng = np.random.default_rng(0)
    contexts = [_context(rng, "hello how can i help", "act=respond say: order_id", images=2, audio=True,
                         required=("order_id",)),
                _context(rng, "my lamp arrived broken"),
                _context(rng, "thank you goodbye", "act=ask_slot say: order_id email", audio=True,
                         required=("order_id", "email", "not_a_token"))]
    requests = [decoder.prepare(c) for c in contexts]
    placeholders = decoder.tokenizer.convert_tokens_to_ids(["[order_id]", "[email]"])
    assert [r.required_ids for r in requests] == [placeholders[:1], [], placeholders]
    alone = [_greedy(decoder, decoder.prefill([r]), 8)[0] for r in requests]
    assert len({tuple(a) for a in alone}) == 3  # the inputs matter
    together = _greedy(decoder, decoder.prefill(requests), 8)
    assert together == alone
    # A row that joins two steps late, then the first row leaving: the others go on as alone.
    running = decoder.step(decoder.prefill(requests[:2]))
    running = decoder.step(running)
    merged = decoder.merge(running, decoder.prefill(requests[2:]))
    rows = [[], [], alone[2][:1]]
    for _ in range(3):
        merged = decoder.step(merged)
        for row, token in zip(rows, merged.next_ids.tolist(), strict=True):
            row.append(token)
    assert rows[0] == alone[0][3:6] and rows[1] == alone[1][3:6] and rows[2] == alone[2][:4]
    narrowed = decoder.step(decoder.select(merged, [1, 2]))
    assert narrowed.next_ids.tolist() == [alone[1][6], alone[2][4]]


async def test_continuous_decoder_streams_what_generate_writes(tmp_path):
    from app.batching import ContinuousDecoder
    from models.decoder import GenerationStats

    decoder = _decoder(tmp_path)
    context = _context(np.random.default_rng(0), "hello how can i help", "act=respond say: order_id", images=2,
                       audio=True)
    context.values.update({"order_id": "A-1", "email": "a@b.c"})  # no placeholder banned: generate() knows no bans
    request = decoder.prepare(context)
    assert not request.banned_ids
    assert request.image.shape == (6, 12) and request.audio.shape == (5, 8)
    batching = ContinuousDecoder(decoder, max_batch_size=4)
    assert batching.grounded_by_construction and batching.wants_features
    try:
        stats = GenerationStats()
        pieces = [p async for p in batching.stream(context, max_new_tokens=12, stats=stats)]
        batch = collate([request], decoder.model.config, with_labels=False)
        expected = decoder.model.generate(**batch, max_new_tokens=12, do_sample=False)[0, 1:].tolist()
        if decoder.model.config.eos_token_id in expected:
            expected = expected[:expected.index(decoder.model.config.eos_token_id)]
        text = decoder.tokenizer.decode(expected, skip_special_tokens=True)
        assert "".join(pieces) == text.rstrip("\ufffd")  # a byte-level model may end inside a character
        assert len(pieces) > 1 and stats.prompt_tokens == len(request)
        assert stats.completion_tokens == len(expected)
    finally:
        await batching.aclose()


async def test_continuous_decoder_samples_with_the_replys_own_seed(tmp_path):
    from app.batching import ContinuousDecoder
    from models.decoder import Sampling

    batching = ContinuousDecoder(_decoder(tmp_path), max_batch_size=4)
    context = _context(np.random.default_rng(0), "hello how can i help")

    async def reply(sampling: Sampling | None = None) -> str:
        options = {"sampling": sampling} if sampling else {}
        return "".join([p async for p in batching.stream(context, max_new_tokens=12, **options)])

    try:
        greedy = await reply()
        assert await reply(Sampling(temperature=0, seed=4)) == greedy
        hot = await reply(Sampling(temperature=1.5, seed=4))
        torch.manual_seed(99)  # the global generator plays no part
        assert await reply(Sampling(temperature=1.5, seed=4)) == hot
        others = {await reply(Sampling(temperature=1.5, seed=seed)) for seed in (5, 6)}
        assert others != {hot}  # another seed, another reply
    finally:
        await batching.aclose()
