"""Play stories against Parley over HTTP (a running server, or the app in-process) and record what happened.

Each story gets a session of its own; its turns are sent in order, stories run concurrently (the server
batches encoders and decoders across sessions). The session is deleted afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from app.stories.format import Story, Turn
from app.stories.media import MediaCache

if TYPE_CHECKING:
    from app.config import Settings

TIMEOUT_S = 300  # a first turn may wait for a cold model
MAX_RETRIES = 5  # on 409/429/503 with Retry-After
MAX_RETRY_WAIT_S = 10.0


@dataclass(frozen=True)
class TurnOutcome:
    """One turn as sent and answered, beside what was expected of it."""

    number: int  # 1-based
    modalities: tuple[str, ...]
    expected_intent: str | None
    check_intent: bool
    intent: str | None
    expected_slots: dict[str, str]
    slots: dict[str, str]  # what the user's turns filled (action results left out)
    reply: str
    missing: tuple[str, ...] = ()  # must_say entries absent from the reply ("a | b" for alternatives)
    forbidden: tuple[str, ...] = ()  # never_say phrases (the turn's, the story's) present in the reply
    error: str | None = None  # the request failed: the turn counts as wrong on every measure
    heard: str = ""  # transcript and OCR text, to see why a turn went wrong
    grounded: bool = False  # the reply is the decoder's own wording (else the policy's, sent in its place)

    @property
    def intent_ok(self) -> bool:
        return self.error is None and self.intent == self.expected_intent

    @property
    def slots_ok(self) -> bool:
        return self.error is None and _folded(self.slots) == _folded(self.expected_slots)

    @property
    def met(self) -> bool:
        """Every expectation of the turn holds."""
        return ((self.intent_ok or not self.check_intent) and self.slots_ok and not self.missing
                and not self.forbidden)


@dataclass(frozen=True)
class StoryOutcome:
    name: str
    source: str
    tags: tuple[str, ...]
    modalities: tuple[str, ...]
    turns: tuple[TurnOutcome, ...] = field(default_factory=tuple)

    @property
    def success(self) -> bool:
        """Task success: the final turn meets all its expectations and no reply said a forbidden phrase."""
        return bool(self.turns) and self.turns[-1].met and not any(t.forbidden or t.error for t in self.turns)

    @property
    def final_intent(self) -> str | None:
        return self.turns[-1].expected_intent if self.turns else None


def _folded(slots: dict[str, str]) -> dict[str, str]:
    return {name: value.strip().lower() for name, value in slots.items()}


class StoryClient:
    """A Parley HTTP client for stories: turns with media, retries on busy answers."""

    def __init__(self, http: httpx.AsyncClient, media: MediaCache) -> None:
        self.http = http
        self.media = media

    async def call(self, method: str, path: str, **kwargs) -> dict:
        for _ in range(MAX_RETRIES):
            response = await self.http.request(method, path, **kwargs)
            if response.status_code in (409, 429, 503) and "retry-after" in response.headers:
                await asyncio.sleep(min(float(response.headers["retry-after"]), MAX_RETRY_WAIT_S))
                continue
            if response.status_code >= 400:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
            return response.json() if response.content else {}
        raise RuntimeError(f"{method} {path}: still busy after {MAX_RETRIES} tries")

    async def send(self, session: str, turn: Turn) -> dict:
        """The server's answer to `turn`: JSON for text alone, multipart with files when it carries media."""
        path = f"/v1/sessions/{session}/turns"
        files = [("image", self.media.image(spec)) for spec in turn.images]
        if turn.audio is not None:
            files.append(("audio", self.media.audio(turn.audio)))
        if not files:
            return await self.call("POST", path, json={"text": turn.text})
        return await self.call("POST", path, data={"text": turn.text} if turn.text else {}, files=files)


async def run_stories(client: StoryClient, stories: list[Story], *, concurrency: int = 4,
                      progress: Callable[[StoryOutcome], None] | None = None) -> list[StoryOutcome]:
    """Outcomes in the order of `stories`; `progress` is called as each story ends."""
    gate = asyncio.Semaphore(concurrency)

    async def one(story: Story) -> StoryOutcome:
        async with gate:
            outcome = await run_story(client, story)
        if progress is not None:
            progress(outcome)
        return outcome

    return list(await asyncio.gather(*(one(story) for story in stories)))


async def run_story(client: StoryClient, story: Story) -> StoryOutcome:
    try:
        session = (await client.call("POST", "/v1/sessions"))["id"]
    except (RuntimeError, httpx.HTTPError) as error:
        turns: tuple[TurnOutcome, ...] = (_failed(1, story.turns[0], f"no session: {type(error).__name__}: {error}"),)
    else:
        try:
            turns = await _play_turns(client, session, story)
        finally:
            await client.call("DELETE", f"/v1/sessions/{session}")  # leave nothing behind on the server
    return StoryOutcome(name=story.name, source=story.source, tags=story.tags, modalities=story.modalities,
                        turns=turns)


async def _play_turns(client: StoryClient, session: str, story: Story) -> tuple[TurnOutcome, ...]:
    outcomes = []
    for number, turn in enumerate(story.turns, start=1):
        try:
            body = await client.send(session, turn)
        except (RuntimeError, httpx.HTTPError) as error:
            outcomes.append(_failed(number, turn, f"{type(error).__name__}: {error}"))
            break  # the rest of the story depends on this turn
        outcomes.append(judge(number, turn, body, story_never_say=story.never_say))
    return tuple(outcomes)


def judge(number: int, turn: Turn, body: dict, *, story_never_say: tuple[str, ...] = ()) -> TurnOutcome:
    """The outcome of one answered turn: the server's `body` (a turn response) against the turn's expectations."""
    state = body["state"]
    sources = state.get("slot_sources") or {}
    slots = {name: str(value) for name, value in (state.get("slots") or {}).items()
             if value is not None and (sources.get(name) or {}).get("modality") != "action"}
    reply = body.get("reply", "")
    said = reply.lower()
    missing = tuple(" | ".join(options) for options in turn.must_say if not any(o.lower() in said for o in options))
    forbidden = tuple(p for p in dict.fromkeys(turn.never_say + story_never_say) if p.lower() in said)
    heard = [body.get("transcript") or ""] + [(image.get("ocr_text") or "") for image in body.get("images") or []]
    return TurnOutcome(
        number=number, modalities=turn.modalities, expected_intent=turn.intent, check_intent=turn.check_intent,
        intent=state.get("intent"), expected_slots=turn.slots, slots=slots, reply=reply, missing=missing,
        forbidden=forbidden, heard=" / ".join(h.replace("\n", " ") for h in heard if h),
        grounded=bool(body.get("grounded")),
    )


def _failed(number: int, turn: Turn, error: str) -> TurnOutcome:
    return TurnOutcome(number=number, modalities=turn.modalities, expected_intent=turn.intent,
                       check_intent=turn.check_intent, intent=None, expected_slots=turn.slots, slots={}, reply="",
                       error=error)


@asynccontextmanager
async def remote_client(base_url: str, api_key: str | None, media: MediaCache) -> AsyncIterator[StoryClient]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=TIMEOUT_S) as http:
        yield StoryClient(http, media)


@asynccontextmanager
async def in_process_client(settings: Settings, media: MediaCache) -> AsyncIterator[StoryClient]:
    """The app built from `settings` with its models loaded, talked to in-process (no sockets)."""
    from app.main import create_app  # the models and the app load only for in-process runs

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await application.state.loading
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley", timeout=TIMEOUT_S) as http:
            yield StoryClient(http, media)
