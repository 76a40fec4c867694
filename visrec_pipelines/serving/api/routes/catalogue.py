"""Catalogue routes: an item, the users and their histories, the tags, and item thumbnails."""
from fastapi import APIRouter
from fastapi.responses import Response

from ...queries import NotFound
from ..deps import StateDep, ThumbnailsDep
from ..errors import documented
from ..params import (
    HISTORY_LIMIT,
    THUMBNAIL_SIZE,
    USERS_LIMIT,
    HistoryLimitQuery,
    ItemIdPath,
    ThumbnailSizeQuery,
    UserIdPath,
    UsersLimitQuery,
)
from ..responses import fast_json
from ..status_models import History, ItemDetail, Tags, Users

router = APIRouter(tags=["catalogue"])


@router.get("/items/{item_id}", response_model=ItemDetail, responses=documented(404, 422, 503),
            summary="One item: its card, whether the index holds it, the champion's popularity")
async def item(item_id: ItemIdPath, state: StateDep):
    return fast_json(state.item(item_id))


@router.get("/users", summary="Users the champion knows, longest histories first", response_model=Users,
            responses=documented(422, 503))
async def users(state: StateDep, limit: UsersLimitQuery = USERS_LIMIT.default):
    return fast_json({"users": state.users(limit)})


@router.get("/users/{user_id}/history", summary="The user's items, most recent first", response_model=History,
            responses=documented(422, 503))
async def history(user_id: UserIdPath, state: StateDep, limit: HistoryLimitQuery = HISTORY_LIMIT.default):
    return fast_json(state.history(user_id, limit))


@router.get("/tags", summary="Every tag with its item count", response_model=Tags, responses=documented(503))
async def tags(state: StateDep):
    return fast_json({"tags": [{"tag": t, "items": n} for t, n in state.catalogue.tag_counts()]})


@router.get("/images/{item_id}", summary="The item's picture as a JPEG thumbnail", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG"}, **documented(404, 422, 503)})
def image(item_id: ItemIdPath, state: StateDep, thumbnails: ThumbnailsDep,
          size: ThumbnailSizeQuery = THUMBNAIL_SIZE.default):
    row = state.catalogue.row.get(item_id)
    path = state.catalogue.image_file(row) if row is not None else None
    if path is None:
        raise NotFound(f"item {item_id!r} has no image in dataset {state.settings.dataset!r}")
    data = thumbnails.get(path, size)
    if data is None:
        raise NotFound(f"the image of item {item_id!r} cannot be decoded")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})
