"""The OpenAPI document: every operation described, with examples for its body and its errors documented."""

import pytest

NATIVE_ERROR = "#/components/schemas/ErrorResponse"
OPENAI_ERROR = "#/components/schemas/OpenAIErrorResponse"


@pytest.fixture(scope="module")
async def document(app):
    return app.openapi()


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", path, operation


def _examples(media: dict, document: dict) -> list:
    found = list(media.get("examples", {}).values()) + ([media["example"]] if "example" in media else [])
    schema = media.get("schema", {})
    for option in [schema, *schema.get("anyOf", [])]:  # an optional body is anyOf [model, null]
        if "$ref" in option:
            option = document["components"]["schemas"][option["$ref"].rsplit("/", 1)[-1]]
        found += option.get("examples", [])
    return found


async def test_every_operation_has_a_summary_and_a_description(document):
    for label, _, operation in operations(document):
        assert operation.get("summary"), f"{label} has no summary"
        assert operation.get("description"), f"{label} has no description"


async def test_every_request_body_has_examples(document):
    bodies = 0
    for label, _, operation in operations(document):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            bodies += 1
            assert _examples(media, document), f"{label} {media_type} body has no example"
    assert bodies >= 4  # sessions (JSON), turns (JSON and multipart), chat completions


async def test_every_v1_operation_documents_its_errors_in_its_own_shape(document):
    for label, path, operation in operations(document):
        if not path.startswith("/v1"):
            continue
        errors = {int(status): response for status, response in operation["responses"].items() if status[0] in "45"}
        assert {401, 429} <= set(errors), f"{label} does not document authentication and rate-limit errors"
        shape = OPENAI_ERROR if path.startswith(("/v1/chat", "/v1/models", "/v1/audio")) else NATIVE_ERROR
        for status, response in errors.items():
            assert response["description"], f"{label} {status} has no description"
            assert response["content"]["application/json"]["schema"]["$ref"] == shape, f"{label} {status}"


async def test_error_shapes_have_examples(document):
    schemas = document["components"]["schemas"]
    for name, fields in (("ErrorBody", {"code", "message"}), ("OpenAIErrorBody", {"message", "type", "param", "code"})):
        assert set(schemas[name]["properties"]) == fields
        assert all(schemas[name]["properties"][field].get("examples") for field in fields), name


async def test_the_multipart_turn_takes_files(document):
    form = document["paths"]["/v1/sessions/{session_id}/turns"]["post"]["requestBody"]["content"]["multipart/form-data"]
    properties = form["schema"]["properties"]
    assert properties["image"]["items"]["format"] == "binary" and properties["audio"]["format"] == "binary"


async def test_the_chat_completion_documents_its_stream(document):
    ok = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert "data: [DONE]" in ok["text/event-stream"]["example"]
    assert ok["application/json"]["schema"]["$ref"].endswith("/ChatCompletion")
