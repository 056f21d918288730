"""Sessions survive a Redis restart: a redis-server of this test's own, persisting as docker-compose.yml's
`redis` service does (its command's flags, read from the file), is shut down and started again on the same
data directory in the middle of a conversation."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.api.inprocess import in_process_client
from tests.server import RedisProcess, unique_prefix

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose_redis_flags() -> tuple[str, ...]:
    binary, *flags = yaml.safe_load(COMPOSE.read_text())["services"]["redis"]["command"]
    assert binary == "redis-server"
    return tuple(flags)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path, extra_args=compose_redis_flags())  # later flags win over the defaults
    server.start()
    yield server
    server.kill()


async def test_a_conversation_goes_on_after_redis_restarts(aof_redis, api_settings):
    settings = api_settings.model_copy(update={"redis_url": aof_redis.url, "redis_prefix": unique_prefix()})
    async with in_process_client(settings) as http:
        sid = (await http.post("/v1/sessions", json={"metadata": {"channel": "web"}})).json()["id"]
        for text in ("My lamp arrived broken", "The order is A7Q-4412"):
            assert (await http.post(f"/v1/sessions/{sid}/turns", json={"text": text})).status_code == 200
        before = (await http.get(f"/v1/sessions/{sid}")).json()
        assert before["state"]["slots"]["order_id"] == "A7Q-4412" and len(before["history"]) == 4

        aof_redis.shutdown()
        assert any((aof_redis.directory / "appendonlydir").glob("*.aof")), "no AOF was written"
        aof_redis.start()

        after = (await http.get(f"/v1/sessions/{sid}")).json()
        assert after == before  # state, slot sources, history and metadata, exactly
        third = await http.post(f"/v1/sessions/{sid}/turns", json={"text": "When will the new one arrive?"})
        assert third.status_code == 200, third.text
        assert third.json()["turn"] == 3
        assert third.json()["state"]["slots"]["order_id"] == "A7Q-4412"  # kept from before the restart
        assert third.json()["state"]["slots"]["product"] == "lamp"
        history = (await http.get(f"/v1/sessions/{sid}")).json()["history"]
        assert history[:4] == before["history"] and [e["turn"] for e in history[4:]] == [3, 3]
