"""A small OpenAI-compatible chat server for tests, run as its own process:

    python -m tests.openai_server --model DIR --name NAME --port PORT --log requests.jsonl

It serves GET /v1/models and POST /v1/chat/completions (streamed as SSE or not) by running a real
causal LM (e.g. tests/factories.py tiny_causal_lm) with plain transformers, greedy, and appends one
JSON line per completion to --log: the messages it got and the text it generated, so a test can
compare what Parley shows with what this server produced (and the sampling parameters it was sent, which
it logs but does not apply).
"""

import argparse
import json
import threading
import time
import uuid
from collections.abc import Iterator

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from transformers import AutoModelForCausalLM, AutoTokenizer

from models.hf_cache import CACHE


class Generator:
    def __init__(self, directory: str) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModelForCausalLM.from_pretrained(directory).eval()
        self.lock = threading.Lock()  # one generation at a time: enough for tests
        self.last_tokens = 0  # tokens the last generation produced (read under the lock)

    @torch.inference_mode()
    def pieces(self, messages: list[dict], max_tokens: int) -> Iterator[str]:
        """Greedy decoding over a KV cache; yields text pieces (a split multi-byte character waits)."""
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)["input_ids"]  # (1, T)
        past, generated, emitted = None, [], ""
        self.last_tokens = 0
        for _ in range(max_tokens):
            out = self.model(input_ids=ids, use_cache=True, **{CACHE: past})
            past, next_id = getattr(out, CACHE), int(out.logits[0, -1].argmax())
            if next_id == self.tokenizer.eos_token_id:
                break
            generated.append(next_id)
            self.last_tokens = len(generated)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if len(text) > len(emitted) and not text.endswith("\ufffd"):
                yield text[len(emitted):]
                emitted = text
            ids = torch.tensor([[next_id]])  # (1, 1)


def create_app(generator: Generator, name: str, log_path: str) -> FastAPI:
    app = FastAPI()

    def record(body: dict, pieces: list[str]) -> None:
        with open(log_path, "a") as log:
            log.write(json.dumps({"messages": body["messages"], "max_tokens": body.get("max_tokens"),
                                  "sampling": {key: body.get(key) for key in ("temperature", "top_p", "seed")},
                                  "stream": bool(body.get("stream")), "pieces": pieces,
                                  "reply": "".join(pieces)}) + "\n")

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "tests"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):  # noqa: ANN202 - JSON or SSE
        body = await request.json()
        if body.get("model") != name:
            return JSONResponse({"error": {"message": f"model {body.get('model')!r} not found"}}, status_code=404)
        max_tokens = int(body.get("max_tokens") or 16)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": name}
        if not body.get("stream"):
            with generator.lock:
                pieces = list(generator.pieces(body["messages"], max_tokens))
            record(body, pieces)
            message = {"role": "assistant", "content": "".join(pieces)}
            return {**base, "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}

        def events() -> Iterator[str]:  # runs in Starlette's thread pool: a sync iterator
            pieces = []
            with generator.lock:
                for piece in generator.pieces(body["messages"], max_tokens):
                    pieces.append(piece)
                    delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                    yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [delta]})}\n\n"
                tokens = generator.last_tokens
            record(body, pieces)
            last = {"index": 0, "delta": {}, "finish_reason": "stop"}
            usage = {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}
            yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [last]})}\n\n"
            yield f"data: {json.dumps({**base, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", default="tiny")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    app = create_app(Generator(args.model), args.name, args.log)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
