"""Catalogue routes: an item, the users and their histories, the tags, and item thumbnails."""
import io
from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import Response

from ....vision.images import ImageRejected, load_rgb
from ...queries import NotFound
from ..deps import StateDep
from ..models import Detail
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

router = APIRouter(tags=["catalogue"])


@router.get("/items/{item_id}", responses={404: {"model": Detail}})
async def item(item_id: ItemIdPath, state: StateDep):
    return fast_json(state.item(item_id))


@router.get("/users", summary="Users the champion knows, longest histories first")
async def users(state: StateDep, limit: UsersLimitQuery = USERS_LIMIT.default):
    return fast_json({"users": state.users(limit)})


@router.get("/users/{user_id}/history", summary="The user's items, most recent first")
async def history(user_id: UserIdPath, state: StateDep, limit: HistoryLimitQuery = HISTORY_LIMIT.default):
    return fast_json(state.history(user_id, limit))


@router.get("/tags", summary="Every tag with its item count")
async def tags(state: StateDep):
    return fast_json({"tags": [{"tag": t, "items": n} for t, n in state.catalogue.tag_counts()]})


@router.get("/images/{item_id}", summary="The item's picture as a JPEG thumbnail",
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Detail}})
def image(item_id: ItemIdPath, state: StateDep, size: ThumbnailSizeQuery = THUMBNAIL_SIZE.default):
    row = state.catalogue.row.get(item_id)
    path = state.catalogue.image_file(row) if row is not None else None
    if path is None:
        raise NotFound(f"item {item_id!r} has no image in dataset {state.settings.dataset!r}")
    stat = path.stat()
    data = _thumbnail(str(path), stat.st_mtime_ns, stat.st_size, size)
    if data is None:
        raise NotFound(f"the image of item {item_id!r} cannot be decoded")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})


@lru_cache(maxsize=2048)
def _thumbnail(path: str, mtime_ns: int, size_bytes: int, size: int) -> bytes | None:
    """JPEG thumbnail through the platform's decode path (mtime and size key the cache)."""
    try:
        picture, _ = load_rgb(path)
    except ImageRejected:
        return None
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
