"""What routes receive, as typed dependencies (``create_app`` puts the objects on ``app.state``).

Dependencies are ``async def`` so FastAPI calls them on the event loop (a plain ``def`` would cost
a thread-pool hop per request). The hot routes take no dependencies at all and call ``state_of``.
"""
import hmac
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException
from starlette.requests import Request

from ...settings import Settings
from ..image_search import ImageSearch
from ..inbox import EventInbox
from ..manager import StateManager
from ..queries import NotReady, ServingState
from ..thumbnails import Thumbnails

LOADING = "the server is still loading (see /status)"


class _StillLoading:
    """Stands in for the state before the first load: any use of it answers 503."""

    def __getattr__(self, name: str) -> Any:
        raise NotReady(LOADING)


_STILL_LOADING = _StillLoading()


def state_of(request: Request) -> ServingState:
    """The state serving now (read once per request); NotReady (503) before the first load."""
    state = request.app.state.manager.state
    if state is None:
        raise NotReady(LOADING)
    return state


async def current_state(request: Request) -> ServingState:
    # FastAPI runs dependencies before it validates the route's own parameters, so raising here
    # would answer 503 where a bad request deserves 422: the stand-in raises at first use instead.
    state = request.app.state.manager.state
    return _STILL_LOADING if state is None else state


async def current_settings(request: Request) -> Settings:
    return request.app.state.settings


async def current_manager(request: Request) -> StateManager:
    return request.app.state.manager


async def current_images(request: Request) -> ImageSearch:
    return request.app.state.images


async def current_inbox(request: Request) -> EventInbox:
    return request.app.state.inbox


async def current_thumbnails(request: Request) -> Thumbnails:
    return request.app.state.thumbnails


StateDep = Annotated[ServingState, Depends(current_state)]
SettingsDep = Annotated[Settings, Depends(current_settings)]
ManagerDep = Annotated[StateManager, Depends(current_manager)]
ImagesDep = Annotated[ImageSearch, Depends(current_images)]
InboxDep = Annotated[EventInbox, Depends(current_inbox)]
ThumbnailsDep = Annotated[Thumbnails, Depends(current_thumbnails)]


async def require_api_key(settings: SettingsDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    expected = settings.api_key
    if expected and not (x_api_key and hmac.compare_digest(x_api_key.encode(), expected.encode())):
        raise HTTPException(401, "this endpoint needs the X-API-Key header (the server's VISREC_API_KEY)")


ApiKey = Depends(require_api_key)   # for dependencies=[...] of the write endpoints
