"""Parley on a local Ray instance (deploy/ray): encoders and decoder as separate Serve deployments,
sessions driven over HTTP through Ray Serve's proxy. Marked `ray`, run with `make test-ray`
(which installs the `ray` extra); the default test command deselects it."""

import base64
import time
from collections.abc import Iterator

import httpx
import pytest

from app.config import Settings
from tests.factories import tiny_causal_lm
from tests.samples import document, encoded, speech_wav
from tests.server import delete_prefix, free_port, unique_prefix

# Ray 2.60 still declares some pydantic fields the v1 way; not ours to fix.
pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore::pydantic.PydanticDeprecatedSince20")]

APP = "parley"
REPLICAS = {"text": 2, "speech": 1, "vision": 1, "decoder": 1, "ingress": 1}
RECEIPT = document(["ACME STORE", "Order No: A7Q-4412", "Total: $37.50"])


@pytest.fixture(scope="module")
def parley_on_ray(redis_url, tmp_path_factory) -> Iterator[str]:
    """Parley deployed on a fresh local Ray instance; yields the Serve proxy's base URL once /readyz is 200."""
    import ray  # the `ray` extra: imported here so that collecting this file needs no Ray
    from ray import serve

    from deploy.ray.app import build_app

    settings = Settings(
        redis_url=redis_url, redis_prefix=unique_prefix(), decoder=str(tiny_causal_lm(tmp_path_factory.mktemp("lm"))),
        decoder_max_new_tokens=8, data_dir=tmp_path_factory.mktemp("data"), lock_wait_ms=5000,
        rate_limit_per_min=0, turn_rate_limit_per_min=0,
    )
    port = free_port()
    # 2 CPUs is what this machine has; every replica asks for a quarter (deploy.ray.app.DEFAULT_CPUS).
    ray.init(address="local", num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             log_to_driver=False)  # "local": a fresh instance of our own, never a cluster already running here
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        options = {name: {"num_replicas": n} for name, n in REPLICAS.items()}
        serve.run(build_app(settings, options=options), name=APP, route_prefix="/")
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, timeout_s=180)
        yield base
    finally:
        serve.shutdown()
        ray.shutdown()
        delete_prefix(redis_url, settings.redis_prefix)


def _wait_ready(base: str, *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready = httpx.get(f"{base}/readyz", timeout=10)
        if ready.status_code == 200:
            return
        models = ready.json().get("models", [])
        assert not any(m["status"] == "failed" for m in models), ready.text
        time.sleep(0.5)
    raise TimeoutError(f"Parley on Ray not ready after {timeout_s} s")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_each_model_is_a_deployment_of_its_own_with_its_replicas(parley_on_ray):
    from ray import serve

    app = serve.status().applications[APP]
    assert app.status == "RUNNING", app
    assert set(app.deployments) == set(REPLICAS)
    for name, replicas in REPLICAS.items():
        deployment = app.deployments[name]
        assert deployment.status == "HEALTHY", (name, deployment)
        assert deployment.replica_states == {"RUNNING": replicas}, (name, deployment)
    # The ingress loaded no model of its own: each one is a proxy to its deployment.
    models = httpx.get(f"{parley_on_ray}/readyz", timeout=10).json()["models"]
    assert {m["name"]: m["source"] for m in models} == {n: f"ray deployment '{n}'" for n in ("text", "speech", "vision", "decoder")}


def test_text_image_and_voice_turns_over_http(parley_on_ray):
    from ray import serve

    def info(name: str) -> dict:
        return serve.get_deployment_handle(name, app_name=APP).info.remote().result()

    before = {name: info(name)["calls"] for name in ("speech", "vision", "decoder")}
    with httpx.Client(base_url=parley_on_ray, timeout=120) as http:
        session = http.post("/v1/sessions")
        assert session.status_code == 201, session.text
        turns = f"/v1/sessions/{session.json()['id']}/turns"

        text = http.post(turns, json={"text": "my lamp arrived broken"})
        assert text.status_code == 200, text.text
        assert text.json()["state"]["intent"] == "damaged_item"
        assert text.json()["state"]["slots"]["product"] == "lamp"
        assert text.json()["reply"].strip()
        usage = text.json()["usage"]  # counted in the decoder replica, carried back with the stream
        assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= 8, usage

        voice = http.post(turns, json={"audio": {"data": b64(speech_wav("my order number is four five one two"))}})
        assert voice.status_code == 200, voice.text
        assert voice.json()["state"]["slots"]["order_id"] == "4512"
        assert voice.json()["state"]["slot_sources"]["order_id"]["modality"] == "audio"

        files = {"image": ("receipt.png", encoded(RECEIPT), "image/png")}
        image = http.post(turns, data={"text": "sorry, this is the right receipt"}, files=files)
        assert image.status_code == 200, image.text
        assert "A7Q-4412" in image.json()["images"][0]["ocr_text"]
        state = image.json()["state"]
        assert state["slots"]["order_id"] == "A7Q-4412" and state["slot_sources"]["order_id"]["modality"] == "image"
        assert state["slots"]["product"] == "lamp" and state["turns"] == 3  # kept across turns

        # Streaming goes through the decoder deployment piece by piece and ends with the full response.
        with http.stream("POST", f"{turns}?stream=true", json={"text": "what was my order number?"}) as stream:
            events = [line.removeprefix("event: ") for line in stream.iter_lines() if line.startswith("event: ")]
        assert events[-1] == "done" and "token" in events, events

        history = http.get(f"/v1/sessions/{session.json()['id']}").json()["history"]
        assert [e["modalities"] for e in history[::2]] == [["text"], ["audio"], ["text", "image"], ["text"]]
    after = {name: info(name) for name in ("speech", "vision", "decoder")}
    assert after["speech"]["calls"] - before["speech"] == 1 and after["speech"]["model"] == "FasterWhisperEncoder"
    assert after["vision"]["calls"] - before["vision"] == 1 and after["vision"]["model"] == "VisionEncoder"
    assert after["decoder"]["calls"] - before["decoder"] == 4 and after["decoder"]["model"] == "ContinuousDecoder"
    assert len({a["pid"] for a in after.values()}) == 3  # three processes


def test_bad_input_through_ray_is_a_clear_4xx_and_changes_nothing(parley_on_ray):
    with httpx.Client(base_url=parley_on_ray, timeout=60) as http:
        session = http.post("/v1/sessions").json()["id"]
        bad = http.post(f"/v1/sessions/{session}/turns", files={"image": ("x.png", b"not an image", "image/png")})
        assert 400 <= bad.status_code < 500, bad.text
        assert set(bad.json()["error"]) == {"code", "message"}
        assert http.get(f"/v1/sessions/{session}").json()["history"] == []


def test_build_app_refuses_a_private_redis_and_unknown_deployments(tmp_path):
    from deploy.ray.app import build_app

    with pytest.raises(ValueError, match="PARLEY_REDIS_URL"):
        build_app(Settings(redis_url=None, data_dir=tmp_path))
    with pytest.raises(ValueError, match="encoder"):
        build_app(Settings(redis_url="redis://127.0.0.1:6379/0", data_dir=tmp_path), options={"encoder": {}})


def test_concurrent_sessions_share_the_decoder_deployment(parley_on_ray):
    from concurrent.futures import ThreadPoolExecutor

    def one_session(n: int) -> dict:
        with httpx.Client(base_url=parley_on_ray, timeout=120) as http:
            session = http.post("/v1/sessions").json()["id"]
            reply = http.post(f"/v1/sessions/{session}/turns", json={"text": f"I want a refund of ${n}0 please"})
            assert reply.status_code == 200, reply.text
            return reply.json()

    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(one_session, range(1, 7)))
    # Each session kept its own amount: no reply or state crossed over between concurrent turns.
    assert [r["state"]["slots"]["amount"] for r in replies] == [f"${n}0.00" for n in range(1, 7)], replies
    assert all(r["turn"] == 1 and r["reply"].strip() and r["usage"]["prompt_tokens"] > 0 for r in replies)
