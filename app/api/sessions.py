"""Session resources: create, read, read state, delete."""

import json

from fastapi import APIRouter, Response

from app.api.deps import PipelineDep, SettingsDep, StoreDep, TenantDep
from app.api.errors_doc import errors
from app.dialogue.state import DialogueState
from app.api.errors import ApiError
from app.schemas import SessionCreate, SessionCreated, SessionDetail

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.post("", status_code=201, response_model=SessionCreated, responses=errors(413, 422, 503))
async def create_session(
    pipeline: PipelineDep, tenant: TenantDep, settings: SettingsDep, body: SessionCreate | None = None
) -> SessionCreated:
    """Open a conversation; its id goes in the path of every turn. The body (optional) carries client metadata."""
    metadata = body.metadata if body else {}
    if len(json.dumps(metadata)) > settings.max_metadata_bytes:
        raise ApiError(413, "metadata_too_large", f"metadata is over {settings.max_metadata_bytes} bytes of JSON")
    record = await pipeline.create_session(tenant, metadata)
    return SessionCreated(id=record.id, created_at=record.created_at, state=DialogueState.model_validate(record.state))


@router.get("/{session_id}", response_model=SessionDetail, responses=errors(404, 409, 410, 503))
async def get_session(session_id: str, store: StoreDep, tenant: TenantDep) -> SessionDetail:
    """The whole session as JSON: metadata, dialogue state and history, oldest first (a privacy export)."""
    record = await store.get(tenant, session_id)
    return SessionDetail(
        id=record.id, created_at=record.created_at, metadata=record.metadata,
        state=DialogueState.model_validate(record.state), history=record.history,
    )


@router.get("/{session_id}/state", response_model=DialogueState, responses=errors(404, 409, 410, 503))
async def get_state(session_id: str, store: StoreDep, tenant: TenantDep) -> DialogueState:
    """The tracked dialogue state only: intent, slots with their sources, sentiment, turn count."""
    record = await store.get(tenant, session_id, with_history=False)
    return DialogueState.model_validate(record.state)


@router.delete("/{session_id}", status_code=204, responses=errors(404, 503))
async def delete_session(session_id: str, store: StoreDep, tenant: TenantDep) -> Response:
    """Erase the session: state, history and stored replies. A later request for it is a 404."""
    await store.delete(tenant, session_id)
    return Response(status_code=204)
