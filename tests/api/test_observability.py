"""Request ids, structured logs and metrics, in-process."""

import json
import logging
import sys

from app.observability.logs import JsonFormatter, logging_config, request_id
from app.observability.metrics import Metrics


async def test_request_id_is_taken_or_made_and_stamped_on_every_log_line(client, session_id, caplog):
    with caplog.at_level(logging.INFO):
        given = await client.get(f"/v1/sessions/{session_id}", headers={"X-Request-Id": "client-7.a:b"})
    assert given.headers["X-Request-Id"] == "client-7.a:b"
    access = [r for r in caplog.records if r.name == "parley.access"]
    assert access and all(r.request_id == "client-7.a:b" for r in access)
    assert access[-1].route == "/v1/sessions/{session_id}" and access[-1].status == 200

    for bad in ("has spaces", "x" * 129, "quote\"d", ""):
        made = (await client.get("/healthz", headers={"X-Request-Id": bad})).headers["X-Request-Id"]
        assert made != bad and len(made) == 32 and int(made, 16) >= 0
    first, second = [(await client.get("/healthz")).headers["X-Request-Id"] for _ in range(2)]
    assert first != second
    assert request_id.get() is None  # reset after each request


async def test_errors_carry_the_request_id_too(client):
    missing = await client.get("/v1/sessions/" + "c" * 32, headers={"X-Request-Id": "lost-1"})
    assert missing.status_code == 404 and missing.headers["X-Request-Id"] == "lost-1"


async def test_requests_are_counted_per_route_template_and_status(client, app, session_id):
    await client.get(f"/v1/sessions/{session_id}/state")
    await client.get("/v1/sessions/" + "d" * 32 + "/state")
    await client.get("/no/such/path/" + session_id)
    text = app.state.metrics.render().decode()
    template = 'method="GET",route="/v1/sessions/{session_id}/state"'
    assert f'parley_http_requests_total{{{template},status="200"}}' in text
    assert f'parley_http_requests_total{{{template},status="404"}}' in text
    assert f'parley_http_request_seconds_count{{{template},status="200"}}' in text
    assert 'parley_http_requests_total{method="GET",route="(unmatched)",status="404"}' in text
    assert session_id not in text  # raw paths never become labels


def test_model_metrics_the_batcher_reports():
    metrics = Metrics()
    metrics.observe_inference("decoder", 0.3, batch_size=4)
    metrics.observe_inference("decoder", 0.1, batch_size=1)
    metrics.set_queue_depth("decoder", 3)
    text = metrics.render().decode()
    assert 'parley_model_inference_seconds_count{model="decoder"} 2.0' in text
    assert 'parley_model_inference_seconds_sum{model="decoder"} 0.4' in text
    assert 'parley_model_batch_size_sum{model="decoder"} 5.0' in text
    assert 'parley_model_batch_size_bucket{le="4.0",model="decoder"} 2.0' in text
    assert 'parley_queue_depth{model="decoder"} 3.0' in text


def _record(msg, args=None, **extra):
    record = logging.getLogger("parley.test").makeRecord("parley.test", logging.WARNING, __file__, 1, msg, args,
                                                         None, extra=extra)
    return record


def test_json_lines_have_the_fields_and_mask_extras():
    token = request_id.set("req-1")
    try:
        record = _record("turn %d done", (3,), route="/v1/x", contact="write to bob@example.org", n=2)
    finally:
        request_id.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "turn 3 done" and line["level"] == "WARNING" and line["logger"] == "parley.test"
    assert line["request_id"] == "req-1" and line["time"].endswith("+00:00")
    assert line["route"] == "/v1/x" and line["n"] == 2 and line["contact"] == "write to [email]"


def test_json_lines_carry_masked_exceptions():
    try:
        raise ValueError("no user jane@example.com")
    except ValueError:
        record = logging.getLogger("parley.test").makeRecord("parley.test", logging.ERROR, __file__, 1, "failed",
                                                             None, sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: no user [email]" in line["exception"] and "jane@" not in line["exception"]


def test_logging_config_formats():
    json_config, text_config = logging_config("json", "info"), logging_config("text", "debug")
    assert json_config["formatters"]["parley"] == {"()": JsonFormatter} and json_config["root"]["level"] == "INFO"
    assert text_config["loggers"]["uvicorn.access"] == {"handlers": [], "propagate": True}
    spec = dict(text_config["formatters"]["parley"])
    text = spec.pop("()")(**spec)
    bare = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started server process [%d]", (7,), None)
    assert text.format(bare).endswith("INFO uvicorn.error [-]: Started server process [7]")  # no request id yet
    bare.request_id = "r-9"
    assert text.format(bare).endswith("INFO uvicorn.error [r-9]: Started server process [7]")
