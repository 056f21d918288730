"""A decoder on another machine: any OpenAI-compatible chat server (vLLM, TGI, llama.cpp server,
Ollama...) streaming the reply to the fused text context.

    PARLEY_DECODER=openai:http://gpu-box:8001/v1#Qwen/Qwen2.5-7B-Instruct

The base URL is what the server's OpenAI clients use (it ends in /v1 for all of those above); the
part after '#' is the model name it serves. Only the text prompt goes over the wire (no encoder
features: `wants_features = False`). Greedy (temperature 0) like the local decoder unless the turn asks
for sampling: then its temperature, top_p and seed are sent as they are.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from models.decoder import GenerationStats, ReplyContext, Sampling

CONNECT_TIMEOUT_S = 3.0  # a server that does not accept within this is down
READ_TIMEOUT_S = 60.0  # longest wait for the first chunk (prompt processing) or between two chunks


class DecoderUnavailable(Exception):
    """The remote decoder did not answer, timed out or refused the request; the turn fails and
    changes nothing, and may be retried."""


def parse_spec(spec: str) -> tuple[str, str]:
    """'openai:<base-url>#<model>' -> (base URL without a trailing '/', model); ValueError otherwise."""
    rest = spec.removeprefix("openai:")
    base, sep, model = rest.partition("#")
    if not spec.startswith("openai:") or not sep or not model.strip() or not base.startswith(("http://", "https://")):
        raise ValueError(f"remote decoder must look like openai:http://host:port/v1#model-name, not {spec!r}")
    return base.rstrip("/"), model.strip()


class OpenAIDecoder:
    wants_features = False

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None) -> None:
        self.base_url, self.model = base_url, model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),  # one stream per turn in flight
        )

    @classmethod
    def from_spec(cls, spec: str, *, api_key: str | None = None) -> OpenAIDecoder:
        base_url, model = parse_spec(spec)
        return cls(base_url, model, api_key=api_key)

    async def models(self) -> list[str]:
        """Model names the server lists (GET /models); DecoderUnavailable when it does not answer."""
        async with self._errors():
            response = await self._client.get(f"{self.base_url}/models")
            await _check(response)
            return [entry["id"] for entry in response.json().get("data", [])]

    async def stream(self, context: ReplyContext, *, max_new_tokens: int,
                     stats: GenerationStats | None = None, sampling: Sampling | None = None) -> AsyncIterator[str]:
        """The reply's text pieces as the server streams them (SSE chunks of chat.completion.chunk)."""
        body = {
            "model": self.model, "messages": list(context.messages), "max_tokens": max_new_tokens,
            "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True},  # token counts in the last chunk, where supported
        }
        if sampling is not None and not sampling.greedy:
            body.update(temperature=sampling.temperature, top_p=sampling.top_p)
            if sampling.seed is not None:
                body["seed"] = sampling.seed
        async with self._errors(), self._client.stream("POST", f"{self.base_url}/chat/completions", json=body) as response:
            await _check(response)
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, ': keep-alive' comments, 'event:' lines
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:  # vLLM and llama.cpp report a failure mid-stream this way
                    raise DecoderUnavailable(f"remote decoder failed mid-reply: {chunk['error']}")
                if stats is not None and chunk.get("usage"):
                    stats.prompt_tokens = chunk["usage"].get("prompt_tokens", 0)
                    stats.completion_tokens = chunk["usage"].get("completion_tokens", 0)
                for choice in chunk.get("choices") or ():
                    if piece := (choice.get("delta") or {}).get("content"):
                        yield piece

    async def aclose(self) -> None:
        await self._client.aclose()

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """Transport failures, timeouts and garbled chunks -> DecoderUnavailable naming the server."""
        try:
            yield
        except httpx.TimeoutException as exc:
            raise DecoderUnavailable(f"remote decoder at {self.base_url} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise DecoderUnavailable(f"remote decoder at {self.base_url} is unreachable: {exc}") from exc
        except httpx.HTTPError as exc:  # e.g. a body that does not decode as its Content-Encoding says
            raise DecoderUnavailable(f"remote decoder at {self.base_url} sent an unreadable answer: {exc}") from exc
        except (json.JSONDecodeError, AttributeError, TypeError) as exc:
            raise DecoderUnavailable(f"remote decoder at {self.base_url} sent a malformed chunk: {exc}") from exc


async def _check(response: httpx.Response) -> None:
    if response.status_code != 200:
        detail = (await response.aread()).decode(errors="replace")[:300]
        raise DecoderUnavailable(f"remote decoder answered {response.status_code}: {detail}")
