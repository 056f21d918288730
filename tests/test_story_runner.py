"""The story runner's HTTP side against a scripted server (httpx.MockTransport): what it sends, retries and cleans up."""

import httpx

from app.stories.format import AudioSpec, ImageSpec, Story, Turn
from app.stories.media import MediaCache
from app.stories.runner import StoryClient, run_stories

RECEIPT = ImageSpec(kind="receipt", lines=("Order A7Q-4412",))


class ScriptedServer:
    """Answers sessions and turns like Parley; `fail_turn` answers that turn number with a 500."""

    def __init__(self, *, fail_turn: int | None = None, busy_once: bool = False) -> None:
        self.requests: list[httpx.Request] = []
        self.fail_turn, self.busy_once, self.turns = fail_turn, busy_once, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "POST" and request.url.path == "/v1/sessions":
            return httpx.Response(201, json={"id": "s1"})
        if request.method == "DELETE":
            return httpx.Response(204)
        if self.busy_once:
            self.busy_once = False
            return httpx.Response(409, headers={"Retry-After": "0"}, json={"error": {"code": "busy", "message": ""}})
        self.turns += 1
        if self.turns == self.fail_turn:
            return httpx.Response(500, json={"error": {"code": "internal", "message": "boom"}})
        return httpx.Response(200, json={"reply": f"Order A7Q-4412, turn {self.turns}.", "images": [],
                                         "state": {"intent": "order_status", "slots": {"order_id": "A7Q-4412"}}})


async def play(server: ScriptedServer, story: Story):
    async with httpx.AsyncClient(transport=httpx.MockTransport(server), base_url="http://parley") as http:
        [outcome] = await run_stories(StoryClient(http, MediaCache()), [story])
    return outcome


def story(*turns: Turn) -> Story:
    return Story(name="s", source="f.yaml", turns=turns)


async def test_text_goes_as_json_and_media_as_multipart_then_the_session_is_deleted():
    server = ScriptedServer()
    outcome = await play(server, story(
        Turn(text="where is my order?", intent="order_status", check_intent=True),
        Turn(text="here", images=(RECEIPT,), audio=AudioSpec(say="four five one two"),
             slots={"order_id": "A7Q-4412"}, must_say=(("a7q-4412",),)),
    ))
    create, text_turn, media_turn, delete = server.requests
    assert text_turn.headers["content-type"] == "application/json"
    assert media_turn.headers["content-type"].startswith("multipart/form-data")
    body = media_turn.read()
    assert b'name="image"; filename="photo.png"' in body and b'name="audio"; filename="speech.wav"' in body
    assert b'name="text"' in body
    assert (delete.method, delete.url.path) == ("DELETE", "/v1/sessions/s1")
    assert outcome.success and [t.reply for t in outcome.turns] == ["Order A7Q-4412, turn 1.", "Order A7Q-4412, turn 2."]


async def test_a_busy_answer_is_retried_after_its_retry_after():
    server = ScriptedServer(busy_once=True)
    outcome = await play(server, story(Turn(text="hi", slots={"order_id": "A7Q-4412"})))
    assert outcome.success and server.turns == 1
    assert [r.method for r in server.requests] == ["POST", "POST", "POST", "DELETE"]


async def test_a_failed_turn_ends_the_story_as_failed_and_still_deletes_the_session():
    server = ScriptedServer(fail_turn=1)
    outcome = await play(server, story(Turn(text="hi"), Turn(text="never sent")))
    assert len(outcome.turns) == 1 and "500" in outcome.turns[0].error and not outcome.success
    assert server.requests[-1].method == "DELETE" and server.turns == 1
