"""PARLEY_DECODER=fused:<dir> through the app: a tiny random FusedSeq2Seq checkpoint reads the turn's
image features (built-in pixel patches) and Whisper states, streams its reply, and a checkpoint made
for other encoders fails at start-up with a message that says what to set."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import torch
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from PIL import Image, ImageDraw

from app.config import Settings
from app.main import create_app
from app.observability.metrics import Metrics
from app.wiring import CAUSAL_REPLY_TOKENS, load_decoder, reply_tokens
from models.fused import FusedSeq2Seq, encode_context, encode_decision
from models.registry import resolve_placement
from models.vision import PatchFeatures
from tests.api.inprocess import asgi_client
from tests.factories import tiny_fused
from tests.samples import encoded, speech_wav
from tests.server import delete_prefix, unique_prefix

def picture(colour: str) -> Image.Image:
    image = Image.new("RGB", (128, 128), "white")
    ImageDraw.Draw(image).ellipse((20, 20, 100, 100), fill=colour)
    return image


def reference_reply(directory: Path, text: str, image: Image.Image | None, decision: str) -> str:
    """What the checkpoint writes for a first turn `text` (+ image) and the policy's `decision` as text,
    computed here without the app."""
    from transformers import AutoTokenizer

    model, tokenizer = FusedSeq2Seq.from_pretrained(directory).eval(), AutoTokenizer.from_pretrained(directory)
    batch = {"input_ids": torch.tensor([encode_context(tokenizer, f"user: {text}", model.config)]),
             "decision_ids": torch.tensor([encode_decision(tokenizer, decision, model.config)])}
    if image is not None:
        batch["image_features"] = torch.from_numpy(PatchFeatures().predict_batch([image])[0])[None]
    out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    return tokenizer.decode(out[0, 1:], skip_special_tokens=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_fused(tmp_path_factory.mktemp("fused"), image_dim=PatchFeatures.feature_dim)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with `settings` (its own Redis key prefix, deleted afterwards) and a client for it."""
    settings = settings.model_copy(update={"redis_prefix": unique_prefix()})
    app = create_app(settings)
    try:
        async with LifespanManager(app, startup_timeout=120), asgi_client(app) as client:
            yield app, client
    finally:
        delete_prefix(settings.redis_url, settings.redis_prefix)


async def test_fused_decoder_streams_a_reply_from_the_image_features(api_settings, checkpoint):
    settings = api_settings.model_copy(update={
        "decoder": f"fused:{checkpoint}", "vision_backbone": "patches", "decoder_cpu_dtype": "float32"})
    async with running(settings) as (app, client):
        await app.state.loading
        assert app.state.runtime.pipeline.decoder.wants_features
        red, blue = picture("red"), picture("blue")
        # Colours are no business of the default domain's: the policy calls the question off topic.
        decision = "act=off_topic intent=none ask=none user=off_topic acted=no sentiment=neutral handoff=no"
        expected = {colour: reference_reply(checkpoint, "what colour is it?", image, decision)
                    for colour, image in (("red", red), ("blue", blue))}
        assert expected["red"] != expected["blue"]  # this random model's reply depends on the image
        for colour, image in (("red", red), ("blue", blue)):
            session = (await client.post("/v1/sessions")).json()["id"]
            response = await client.post(f"/v1/sessions/{session}/turns?stream=true", data={
                "text": "what colour is it?"}, files={"image": ("shape.png", encoded(image), "image/png")})
            assert response.status_code == 200, response.text
            events = [(block.split("\n")[0].removeprefix("event: "), json.loads(block.split("\n")[1][6:]))
                      for block in response.text.strip().split("\n\n")]
            tokens = "".join(data["text"] for name, data in events if name == "token")
            assert tokens == expected[colour].rstrip("\ufffd")  # a byte-level model may stop inside a character
            done = events[-1]
            assert done[0] == "done" and done[1]["usage"]["completion_tokens"] >= 1
        # A voice turn: the Whisper states go in as audio features, the reply still streams.
        session = (await client.post("/v1/sessions")).json()["id"]
        audio = {"audio": ("q.wav", speech_wav("where is my order"), "audio/wav")}
        body = (await client.post(f"/v1/sessions/{session}/turns", files=audio)).json()
        assert body["usage"]["completion_tokens"] >= 1 and body["transcript"]


async def test_mismatched_checkpoint_fails_at_start_up(api_settings, tmp_path):
    wrong = tiny_fused(tmp_path / "wrong", image_dim=PatchFeatures.feature_dim, audio_dim=384)
    settings = api_settings.model_copy(update={"decoder": f"fused:{wrong}", "vision_backbone": "patches"})
    async with running(settings) as (app, client):
        with pytest.raises(ValueError, match="takes 384-d audio features .* gives 512-d features"):
            await app.state.loading
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    decoder = next(m for m in ready.json()["models"] if m["name"] == "decoder")
    assert decoder["status"] == "failed" and "PARLEY_SPEECH_MODEL" in decoder["error"]


async def test_an_unset_reply_cap_is_the_fused_decoders_own_reply_length(api_settings, checkpoint):
    """The bank's longest phrasings are over 64 tokens: a fused decoder writes up to its max_target_positions."""
    settings = api_settings.model_copy(update={"decoder": f"fused:{checkpoint}", "decoder_cpu_dtype": "float32"})
    fused = load_decoder(settings, resolve_placement("cpu", cpu_dtype="float32"), Metrics())
    remote = load_decoder(settings.model_copy(update={"decoder": "openai:http://127.0.0.1:9/v1#m"}),
                          resolve_placement("cpu"), Metrics())
    try:
        assert reply_tokens(fused) == FusedSeq2Seq.from_pretrained(checkpoint).config.max_target_positions > 64
        assert reply_tokens(remote) == CAUSAL_REPLY_TOKENS
    finally:
        await fused.aclose()
        await remote.aclose()
