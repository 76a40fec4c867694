"""Feedback events: validated against the data contract's rules, landed for the pipeline,
idempotent by event id. Needs X-API-Key when the server has an API key."""
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException
from fastapi.responses import JSONResponse

from ....data.landing import EventConflict
from ....data.rules import EventRejected, validate_event
from ..deps import ApiKey, InboxDep, SettingsDep, StateDep
from ..errors import BODY, documented
from ..models import EventsAccepted, FeedbackEvent

router = APIRouter(tags=["feedback"])


@router.post("/events", response_model=EventsAccepted, dependencies=[ApiKey],
             responses=documented(*BODY, 401, 409, 422, 503),
             summary="Feedback events (one or a list), appended to the landing area; idempotent by event_id")
def post_events(events: Annotated[FeedbackEvent | list[FeedbackEvent], Body()], state: StateDep,
                settings: SettingsDep, inbox: InboxDep):
    batch = events if isinstance(events, list) else [events]
    if not batch:
        return JSONResponse({"detail": [{"loc": ["body"], "msg": "no events in the request", "type": "value_error"}]},
                            status_code=422)
    if len(batch) > settings.max_events_per_request:
        raise HTTPException(413, f"{len(batch)} events in one request; at most {settings.max_events_per_request}")
    users = inbox.known_users(state.dataset)      # Unavailable (503) if users.csv cannot be read
    try:
        checked = [validate_event(e.model_dump(), state.catalogue.row, users,
                                  index=i if isinstance(events, list) else None)
                   for i, e in enumerate(batch)]
    except EventRejected as rejected:
        where = ["body"] + ([rejected.index] if rejected.index is not None else []) + [rejected.field]
        return JSONResponse({"detail": [{"loc": where, "msg": rejected.message, "type": "value_error"}]},
                            status_code=422)
    try:
        result = inbox.store(state.dataset, checked)
    except EventConflict as conflict:
        raise HTTPException(409, str(conflict)) from None
    outcomes = [{"event_id": i, "status": "stored"} for i in result.stored]
    outcomes += [{"event_id": i, "status": "duplicate"} for i in result.duplicates]
    return {"stored": len(result.stored), "duplicates": len(result.duplicates), "results": outcomes,
            "file": result.file}
