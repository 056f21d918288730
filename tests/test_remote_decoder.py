"""PARLEY_DECODER=openai:<base-url>#<model> against a real second server process on localhost
(tests/openai_server.py running a tiny causal LM): Parley streams what that server generated for
the context Parley sent, and a remote that is down fails the turn with 503 and changes nothing."""

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from models.decoder import GenerationStats, ReplyContext, Sampling
from models.remote import DecoderUnavailable, OpenAIDecoder, parse_spec
from tests.api.inprocess import in_process_client
from tests.factories import tiny_causal_lm
from tests.server import free_port, unique_prefix, wait_until

MODEL = "tiny-chat"
MESSAGES = [{"role": "system", "content": "You help customers."}, {"role": "user", "content": "my lamp broke"}]


class ChatServer:
    """tests/openai_server.py as its own process, with the JSONL log of what it generated."""

    def __init__(self, model_dir: Path, log_dir: Path) -> None:
        self.port, self.log = free_port(), log_dir / "requests.jsonl"
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.output = open(log_dir / "server.out", "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.openai_server", "--model", str(model_dir), "--name", MODEL,
             "--port", str(self.port), "--log", str(self.log)], stdout=self.output, stderr=self.output)
        try:
            wait_until(lambda: httpx.get(f"{self.base}/models", timeout=2).status_code == 200, process=self.process,
                       timeout_s=120, what="test chat server", log=log_dir / "server.out", interval_s=0.2)
        except RuntimeError:
            self.stop()
            raise

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.output.close()


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    server = ChatServer(tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm")), tmp_path_factory.mktemp("chat-server"))
    yield server
    server.stop()


def test_spec_names_base_url_and_model():
    assert parse_spec("openai:http://gpu:8001/v1/#Qwen/Qwen2.5-7B-Instruct") == (
        "http://gpu:8001/v1", "Qwen/Qwen2.5-7B-Instruct")
    for bad in ("openai:http://gpu:8001/v1", "openai:gpu:8001#m", "openai:http://gpu/v1#  "):
        with pytest.raises(ValueError, match="openai:http://host:port/v1#model-name"):
            parse_spec(bad)
    with pytest.raises(ValueError, match="remote decoder"):
        Settings(decoder="openai:nowhere")


async def test_stream_is_what_the_server_generated(chat_server: ChatServer):
    decoder = OpenAIDecoder(chat_server.base, MODEL)
    try:
        assert await decoder.models() == [MODEL]
        stats = GenerationStats()
        pieces = [p async for p in decoder.stream(ReplyContext(messages=MESSAGES), max_new_tokens=6, stats=stats)]
    finally:
        await decoder.aclose()
    logged = chat_server.requests()[-1]
    assert (logged["messages"], logged["max_tokens"], logged["stream"]) == (MESSAGES, 6, True)
    assert pieces == logged["pieces"] and "".join(pieces)
    assert 0 < stats.completion_tokens <= 6
    # The server's own non-streamed answer to the same messages is the same text: it is its model talking.
    body = {"model": MODEL, "messages": MESSAGES, "max_tokens": 6}
    plain = httpx.post(f"{chat_server.base}/chat/completions", json=body, timeout=30).json()
    assert plain["choices"][0]["message"]["content"] == "".join(pieces)


async def test_sampling_is_sent_only_when_a_reply_asks_for_it(chat_server: ChatServer):
    decoder = OpenAIDecoder(chat_server.base, MODEL)
    try:
        for sampling in (None, Sampling(temperature=0), Sampling(temperature=0.8, top_p=0.9, seed=3)):
            [p async for p in decoder.stream(ReplyContext(messages=MESSAGES), max_new_tokens=2, sampling=sampling)]
    finally:
        await decoder.aclose()
    assert [logged["sampling"] for logged in chat_server.requests()[-3:]] == [
        {"temperature": 0, "top_p": None, "seed": None}, {"temperature": 0, "top_p": None, "seed": None},
        {"temperature": 0.8, "top_p": 0.9, "seed": 3}]


async def test_unknown_model_and_closed_port_are_decoder_unavailable(chat_server: ChatServer):
    for base, model, message in ((chat_server.base, "nope", "answered 404"),
                                 (f"http://127.0.0.1:{free_port()}/v1", MODEL, "unreachable")):
        decoder = OpenAIDecoder(base, model)
        with pytest.raises(DecoderUnavailable, match=message):
            [p async for p in decoder.stream(ReplyContext(messages=MESSAGES), max_new_tokens=4)]
        await decoder.aclose()


@pytest.fixture(scope="module")
async def client(chat_server: ChatServer, redis_url: str, tmp_path_factory) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        redis_url=redis_url, redis_prefix=unique_prefix(), decoder=f"openai:{chat_server.base}#{MODEL}",
        decoder_max_new_tokens=8, data_dir=tmp_path_factory.mktemp("data"),
        rate_limit_per_min=0, turn_rate_limit_per_min=0,
    )
    async with in_process_client(settings) as http:
        yield http


async def streamed_turn(client: httpx.AsyncClient, sid: str, text: str) -> tuple[list[str], dict]:
    """The token texts and the done event of a streamed turn."""
    async with client.stream("POST", f"/v1/sessions/{sid}/turns?stream=true", json={"text": text}) as response:
        assert response.status_code == 200
        body = "".join([chunk async for chunk in response.aiter_text()])
    events = [(name.removeprefix("event: "), json.loads(data.removeprefix("data: ")))
              for name, data in (block.split("\n", 1) for block in body.strip().split("\n\n"))]
    assert events[-1][0] == "done", events[-1]
    return [data["text"] for name, data in events if name == "token"], events[-1][1]


async def test_turns_stream_the_remote_reply(client: httpx.AsyncClient, chat_server: ChatServer):
    sid = (await client.post("/v1/sessions")).json()["id"]
    tokens, done = await streamed_turn(client, sid, "My lamp arrived broken")
    logged = chat_server.requests()[-1]
    assert tokens == logged["pieces"] and tokens  # Parley streamed exactly what the server generated
    assert logged["stream"] is True and logged["max_tokens"] == 8
    sent = logged["messages"]  # the fused context: system facts first, the user's words last
    assert sent[0]["role"] == "system" and sent[-1] == {"role": "user", "content": "My lamp arrived broken"}
    assert done["usage"]["completion_tokens"] > 0 and done["state"]["slots"]["product"] == "lamp"
    # The tiny model writes nonsense, so the stored reply is the policy's wording (grounded False) or its own.
    assert done["reply"] == ("".join(tokens) if done["grounded"] else done["reply"])
    second = await client.post(f"/v1/sessions/{sid}/turns", json={"text": "It's A7Q-4412"})
    assert second.status_code == 200 and second.json()["turn"] == 2
    assert chat_server.requests()[-1]["messages"][-1]["content"] == "It's A7Q-4412"


async def test_remote_down_is_503_and_changes_nothing(client: httpx.AsyncClient, chat_server: ChatServer):
    sid = (await client.post("/v1/sessions")).json()["id"]
    assert (await client.post(f"/v1/sessions/{sid}/turns", json={"text": "hello"})).status_code == 200
    before = (await client.get(f"/v1/sessions/{sid}")).json()
    chat_server.stop()
    for stream in ("false", "true"):
        response = await client.post(f"/v1/sessions/{sid}/turns?stream={stream}", json={"text": "My lamp broke"})
        assert response.status_code == 503 and "retry-after" in response.headers
        assert response.json()["error"]["code"] == "decoder_unavailable"
    assert (await client.get(f"/v1/sessions/{sid}")).json() == before
    assert before["state"]["turns"] == 1
    assert (await client.get("/readyz")).status_code == 200  # Parley itself stays up
