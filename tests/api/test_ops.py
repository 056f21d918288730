from models.registry import resolve_placement


async def test_healthz(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_readyz_lists_models_once_loaded(client):
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] and body["redis"]
    names = ("text", "speech", "vision", "decoder", "tts")
    assert {m["name"]: m["status"] for m in body["models"]} == dict.fromkeys(names, "ready")
    devices = {m["name"]: m["device"] for m in body["models"]}
    # The decoder runs in bfloat16 where this CPU computes it natively (PARLEY_DECODER_CPU_DTYPE=auto).
    assert devices == {"text": "cpu/float32", "speech": "cpu/float32", "vision": "cpu/float32",
                       "decoder": resolve_placement("cpu", cpu_dtype="auto").describe(), "tts": "cpu/float32"}
    assert all(m["load_s"] >= 0 for m in body["models"])


async def test_openapi_documents_turn_body_and_errors(client):
    spec = (await client.get("/openapi.json")).json()
    turn = spec["paths"]["/v1/sessions/{session_id}/turns"]["post"]
    assert set(turn["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"404", "413", "415", "422"} <= set(turn["responses"])
    assert (await client.get("/docs")).status_code == 200


async def test_metrics_count_turns(client, session_id):
    await client.post(f"/v1/sessions/{session_id}/turns", json={"text": "hello"})
    text = (await client.get("/metrics")).text
    assert 'parley_turn_seconds_count{modalities="text"}' in text
