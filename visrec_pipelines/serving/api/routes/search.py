"""Search by image (upload a picture, get the items that look like it) and by text (words, get the
items whose titles, descriptions and tags match them)."""
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, HTTPException, UploadFile

from ....settings import Settings
from ...image_search import STATUS_FOR_REASON, ImageRejected
from ...queries import NotReady
from ..deps import ImagesDep, SettingsDep, StateDep
from ..errors import BODY, documented
from ..models import ImageSearchOut, TextSearchOut, UploadProblem
from ..params import K, KQuery, TagsQuery, TextQuery
from ..responses import fast_json

router = APIRouter(tags=["recommend"])
PATH = "/search/image"
# the upload limits are the app's settings: describe_limits fills them in
SUMMARY = ("Upload a picture (multipart field 'file', at most {max_upload_bytes:,} bytes and "
           "{max_upload_pixels:,} pixels) and get the catalogue items that look like it")


@router.post(PATH, response_model=ImageSearchOut, summary=SUMMARY,
             responses=documented(*BODY, 415, 422, 503, models={422: UploadProblem}))
def search_image(file: Annotated[UploadFile, File(description="JPEG, PNG, GIF, WebP, TIFF, BMP")],
                 state: StateDep, settings: SettingsDep, images: ImagesDep, tags: TagsQuery,
                 k: KQuery = K.default):
    if state.similar is None:
        raise NotReady("no item index is loaded yet (see /status)")
    declared = (file.content_type or "").lower()
    if declared and not (declared.startswith("image/") or declared == "application/octet-stream"):
        raise HTTPException(415, f"upload type {declared!r} is not an image")
    data = file.file.read(settings.max_upload_bytes + 1)
    try:
        vector = images.vector(data, state.similar.index.dim, state.index_encoder_id, state.space)
    except ImageRejected as rejected:
        raise HTTPException(STATUS_FOR_REASON.get(rejected.reason, 422),
                            f"image rejected ({rejected.reason}): {rejected.detail}") from None
    except RuntimeError as unavailable:
        raise NotReady(str(unavailable)) from None
    return fast_json(state.search_vector(vector, k, tags))


@router.get("/search/text", response_model=TextSearchOut, responses=documented(422, 503),
            summary="Items whose titles, descriptions and tags match the words (by meaning and by word)")
def search_text(q: TextQuery, state: StateDep, tags: TagsQuery, k: KQuery = K.default):
    return fast_json(state.search_text(q, k, tags))


def describe_limits(app: FastAPI, settings: Settings) -> None:
    """Put this app's upload limits into the route's OpenAPI summary. Routers are shared by every
    app in the process, so the route keeps the template and each app's schema gets the numbers
    (FastAPI's way of extending OpenAPI: wrap ``app.openapi``, which caches its schema)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            schema["paths"][PATH]["post"]["summary"] = SUMMARY.format(
                max_upload_bytes=settings.max_upload_bytes, max_upload_pixels=settings.max_upload_pixels)
        return app.openapi_schema

    app.openapi = openapi
