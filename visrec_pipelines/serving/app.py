"""The serving API and the web gallery (FastAPI; OpenAPI docs at /docs).

Hot endpoints (/recommendations, /items/{id}/similar) are ``async def`` and answer from the
in-memory state in well under a millisecond of work, so they run on the event loop without a
thread hop, and they return ready-made JSON bytes (orjson) instead of going through response-model
validation; the models below still document them in OpenAPI. Endpoints that touch files or the
encoder (events, uploads, images) are plain ``def`` and run in the thread pool.
"""
import contextlib
import hmac
import io
import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated

import orjson
from fastapi import Body, Depends, FastAPI, File, Header, Path as PathParam, Query, Request, UploadFile
from fastapi.exceptions import HTTPException
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ..data.contract import EVENT_TYPES, RATING_RANGE, read_table
from ..data.landing import EventConflict, EventLanding, EventRejected, validate_event
from ..vision.images import ImageLimits, ImageRejected, load_rgb
from .image_search import STATUS_FOR_REASON, ImageSearch
from .limits import BodyLimit
from .settings import ServingSettings
from .state import NotFound, NotReady, StateManager, tag_list

log = logging.getLogger("visrec.serving")
GALLERY = Path(__file__).parent / "gallery"
MAX_K = 100
MAX_TAGS = 20
MAX_ID = 128
JSON = "application/json"


# --- response models (documentation; hot endpoints return prebuilt JSON of this shape) ------------
class LooksLike(BaseModel):
    item_id: str
    title: str
    similarity: float


class Because(BaseModel):
    looks_like: LooksLike | None = None
    shared_tags: list[str] = []
    popularity: float | None = None


class ItemCard(BaseModel):
    item_id: str
    title: str
    tags: list[str]
    category: str | None
    image_url: str | None


class ScoredItem(ItemCard):
    score: float
    reason: str
    because: Because | None = None


class Recommendations(BaseModel):
    user_id: str
    known_user: bool
    cold_start: bool = Field(description="true: the user is unknown to the champion; popular, diverse items")
    champion_version: str
    ranker: str
    index_version: str | None
    tags: list[str]
    k: int
    items: list[ScoredItem]


class SimilarItemsOut(BaseModel):
    item: ItemCard
    index_version: str
    tags: list[str]
    k: int
    items: list[ScoredItem]


class ImageSearchOut(BaseModel):
    index_version: str
    tags: list[str]
    k: int
    items: list[ScoredItem]


class FeedbackEvent(BaseModel):
    """One feedback event. Types are checked here; the contract's rules (known item, event type,
    rating range, timestamp not in the future) are checked next, each with a clear message."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"event_id": "evt-0001", "user_id": "u0001", "item_id": "i00042", "event_type": "rating",
         "value": 4.5, "timestamp": "2025-03-01T12:00:00Z"}]})
    event_id: str = Field(description="client-chosen unique id; a retry with the same id is not stored twice")
    user_id: str
    item_id: str
    event_type: str = Field(description=" | ".join(EVENT_TYPES))
    value: float | None = Field(None, description=f"rating {RATING_RANGE[0]}-{RATING_RANGE[1]}; "
                                                  "empty means 1 for other types")
    timestamp: str | None = Field(None, description="ISO-8601 with a time zone; default: now")


class EventOutcome(BaseModel):
    event_id: str
    status: str = Field(description="stored | duplicate")


class EventsAccepted(BaseModel):
    stored: int
    duplicates: int
    results: list[EventOutcome]
    file: str | None


class Detail(BaseModel):
    detail: str


def _json(payload, status: int = 200) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type=JSON)


class _Invalid(Exception):
    def __init__(self, where: list, message: str):
        self.where, self.message = where, message


def _hot_parameters(request: Request, path_name: str) -> tuple[str, int, list[str]]:
    """(id, k, tags) with the rules documented in _HOT_PARAMETERS; raises _Invalid (-> 422)."""
    value = request.path_params[path_name]
    if not 1 <= len(value) <= MAX_ID:
        raise _Invalid(["path", path_name], f"{path_name} must be 1 to {MAX_ID} characters")
    query = request.query_params
    raw_k = query.get("k")
    k = 10
    if raw_k is not None:
        try:
            k = int(raw_k)
        except ValueError:
            raise _Invalid(["query", "k"], f"k must be an integer, got {raw_k[:20]!r}") from None
        if not 1 <= k <= MAX_K:
            raise _Invalid(["query", "k"], f"k must be between 1 and {MAX_K}")
    raw_tags = query.getlist("tags")
    if len(raw_tags) > MAX_TAGS:
        raise _Invalid(["query", "tags"], f"at most {MAX_TAGS} tags")
    return value, k, tag_list(raw_tags) if raw_tags else []


def _HOT_PARAMETERS(path_name: str) -> dict:
    return {"parameters": [
        {"name": path_name, "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID}},
        {"name": "k", "in": "query", "required": False, "description": "how many items",
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10}},
        {"name": "tags", "in": "query", "required": False,
         "description": "only items with ALL these tags (repeat the parameter or comma-separate)",
         "schema": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_TAGS}}]}


def create_app(settings: ServingSettings | None = None, manager: StateManager | None = None,
               start_background: bool = True) -> FastAPI:
    """The app for one dataset. ``start_background``: load state and encoder in background threads
    at start-up, and keep watching for new versions (tests drive ``manager.reload()`` themselves)."""
    settings = settings or ServingSettings()
    manager = manager or StateManager(settings)
    limits = ImageLimits(max_pixels=settings.max_upload_pixels, max_bytes=settings.max_upload_bytes)
    images = ImageSearch(settings.encoder, settings.encoder_weights, limits)
    landing_holder: dict = {}
    users_cache: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if start_background:
            manager.start()
            images.start()
        yield
        manager.stop()

    app = FastAPI(title="visrec serving", version="1", lifespan=lifespan,
                  description="Recommendations from the champion ranker, visually similar items, search by "
                              "image and feedback events for one dataset. The gallery is at /.")
    app.state.manager, app.state.images, app.state.settings = manager, images, settings
    app.add_middleware(BodyLimit, limits={"/search/image": settings.max_upload_bytes + 64 * 1024,
                                          "/events": settings.max_json_bytes}, default=64 * 1024)

    @app.exception_handler(NotReady)
    async def _not_ready(request: Request, exc: NotReady):
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(_Invalid)
    async def _invalid(request: Request, exc: _Invalid):
        return JSONResponse({"detail": [{"loc": exc.where, "msg": exc.message, "type": "value_error"}]},
                            status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound):
        return JSONResponse({"detail": exc.message}, status_code=404)

    def state():
        current = manager.state
        if current is None:
            raise NotReady("the server is still loading (see /status)")
        return current

    def require_api_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        expected = settings.api_key
        if expected and not (x_api_key and hmac.compare_digest(x_api_key.encode(), expected.encode())):
            raise HTTPException(401, "this endpoint needs the X-API-Key header (the server's VISREC_API_KEY)")

    K = Annotated[int, Query(ge=1, le=MAX_K, description="how many items")]
    Tags = Annotated[list[str] | None, Query(description="only items with ALL these tags (repeat or comma-separate)",
                                             max_length=MAX_TAGS)]
    Id = Annotated[str, PathParam(min_length=1, max_length=MAX_ID)]

    # --- probes -------------------------------------------------------------------------------
    @app.get("/healthz", tags=["probes"], summary="Alive (always 200 while the process runs)")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], summary="Ready: 200 once a champion and an index are loaded, else 503",
             responses={503: {"model": Detail}})
    async def readyz():
        status = manager.status()
        if not status["ready"]:
            missing = [name for name in ("champion", "index") if status[name] is None]
            return JSONResponse({"ready": False, "missing": missing, "fallback": status["fallback"],
                                 "last_error": status["last_error"]}, status_code=503)
        return {"ready": True, "champion_version": status["champion"]["version"],
                "index_version": status["index"]["version"],
                "degraded": status["fallback"] is not None, "fallback": status["fallback"],
                "last_error": status["last_error"]}

    @app.get("/status", tags=["probes"], summary="What is served, since when, and what failed to load")
    async def status():
        return {**manager.status(), "image_search": images.status(), "api_key_required": bool(settings.api_key)}

    # --- recommendations and similar items ----------------------------------------------------
    # The two hot endpoints read their parameters themselves (same rules, same 422 format, and
    # documented below): FastAPI's per-request parameter solving costs ~20 us, as much as the
    # recommendation itself, and the benchmark's baseline (/healthz) has no parameters either.
    @app.get("/recommendations/{user_id}", tags=["recommend"], response_model=Recommendations,
             responses={422: {"model": Detail}, 503: {"model": Detail}},
             summary="Top k items for a user, with a reason each; unknown users get popular, diverse items",
             openapi_extra=_HOT_PARAMETERS("user_id"))
    async def recommendations(request: Request):
        user_id, k, tags = _hot_parameters(request, "user_id")
        return _json(state().recommend(user_id, k, tags))

    @app.get("/items/{item_id}/similar", tags=["recommend"], response_model=SimilarItemsOut,
             responses={404: {"model": Detail}, 422: {"model": Detail}, 503: {"model": Detail}},
             summary="Visually similar items (exact inner product over the image vectors)",
             openapi_extra=_HOT_PARAMETERS("item_id"))
    async def similar(request: Request):
        item_id, k, tags = _hot_parameters(request, "item_id")
        return _json(state().similar_items(item_id, k, tags))

    @app.get("/items/{item_id}", tags=["catalogue"], responses={404: {"model": Detail}})
    async def item(item_id: Id):
        return _json(state().item(item_id))

    @app.get("/users", tags=["catalogue"], summary="Users the champion knows, longest histories first")
    async def users(limit: Annotated[int, Query(ge=1, le=1000)] = 100):
        return _json({"users": state().users(limit)})

    @app.get("/users/{user_id}/history", tags=["catalogue"], summary="The user's items, most recent first")
    async def history(user_id: Id, limit: Annotated[int, Query(ge=1, le=500)] = 24):
        return _json(state().history(user_id, limit))

    @app.get("/tags", tags=["catalogue"], summary="Every tag with its item count")
    async def tags():
        return _json({"tags": [{"tag": t, "items": n} for t, n in state().catalogue.tag_counts()]})

    @app.get("/images/{item_id}", tags=["catalogue"], summary="The item's picture as a JPEG thumbnail",
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Detail}})
    def image(item_id: Id, size: Annotated[int, Query(ge=16, le=512)] = 256):
        current = state()
        row = current.catalogue.row.get(item_id)
        path = current.catalogue.image_file(row) if row is not None else None
        if path is None:
            raise NotFound(f"item {item_id!r} has no image in dataset {settings.dataset!r}")
        stat = path.stat()
        data = _thumbnail(str(path), stat.st_mtime_ns, stat.st_size, size)
        if data is None:
            raise NotFound(f"the image of item {item_id!r} cannot be decoded")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})

    # --- search by image ----------------------------------------------------------------------
    @app.post("/search/image", tags=["recommend"], response_model=ImageSearchOut,
              responses={413: {"model": Detail}, 415: {"model": Detail}, 422: {"model": Detail},
                         503: {"model": Detail}},
              summary=f"Upload a picture (multipart field 'file', at most {settings.max_upload_bytes:,} bytes "
                      f"and {settings.max_upload_pixels:,} pixels) and get the catalogue items that look like it")
    def search_image(file: Annotated[UploadFile, File(description="JPEG, PNG, GIF, WebP, TIFF, BMP")],
                     k: K = 10, tags: Tags = None):
        current = state()
        if current.similar is None:
            raise NotReady("no item index is loaded yet (see /status)")
        declared = (file.content_type or "").lower()
        if declared and not (declared.startswith("image/") or declared == "application/octet-stream"):
            raise HTTPException(415, f"upload type {declared!r} is not an image")
        data = file.file.read(settings.max_upload_bytes + 1)
        try:
            vector = images.vector(data, current.similar.index.dim, current.index_encoder_id)
        except ImageRejected as rejected:
            raise HTTPException(STATUS_FOR_REASON.get(rejected.reason, 422),
                                f"image rejected ({rejected.reason}): {rejected.detail}") from None
        except RuntimeError as unavailable:
            raise NotReady(str(unavailable)) from None
        return _json(current.search_vector(vector, k, tag_list(tags)))

    # --- feedback -----------------------------------------------------------------------------
    def landing() -> EventLanding:
        if "landing" not in landing_holder:
            landing_holder["landing"] = EventLanding.for_dataset(state().dataset)
        return landing_holder["landing"]

    def known_users(current):
        """users.csv ids when the dataset has one (events of other users would be quarantined)."""
        path = current.dataset.users_path
        if not path.is_file():
            return None
        stamp = path.stat().st_mtime_ns
        if users_cache.get("stamp") != stamp:
            users_cache.update(stamp=stamp, ids=frozenset(read_table(path, ("user_id",))["user_id"].dropna()))
        return users_cache["ids"]

    @app.post("/events", tags=["feedback"], response_model=EventsAccepted,
              dependencies=[Depends(require_api_key)],
              responses={401: {"model": Detail}, 409: {"model": Detail}, 413: {"model": Detail}},
              summary="Feedback events (one or a list), appended to the landing area; idempotent by event_id")
    def post_events(events: Annotated[FeedbackEvent | list[FeedbackEvent], Body()]):
        batch = events if isinstance(events, list) else [events]
        if not batch:
            raise HTTPException(422, "no events in the request")
        if len(batch) > settings.max_events_per_request:
            raise HTTPException(413, f"{len(batch)} events in one request; at most {settings.max_events_per_request}")
        current = state()
        users = known_users(current)
        try:
            checked = [validate_event(e.model_dump(), current.catalogue.row, users,
                                      index=i if isinstance(events, list) else None)
                       for i, e in enumerate(batch)]
        except EventRejected as rejected:
            where = ["body"] + ([rejected.index] if rejected.index is not None else []) + [rejected.field]
            return JSONResponse({"detail": [{"loc": where, "msg": rejected.message, "type": "value_error"}]},
                                status_code=422)
        try:
            result = landing().store(checked)
        except EventConflict as conflict:
            raise HTTPException(409, str(conflict)) from None
        outcomes = [{"event_id": i, "status": "stored"} for i in result.stored]
        outcomes += [{"event_id": i, "status": "duplicate"} for i in result.duplicates]
        return {"stored": len(result.stored), "duplicates": len(result.duplicates), "results": outcomes,
                "file": result.file}

    @app.post("/admin/reload", tags=["probes"], dependencies=[Depends(require_api_key)],
              summary="Check for a new champion or index now (the watcher also does, every poll_seconds)")
    def admin_reload():
        return {**manager.reload(), "status": manager.status()}

    # --- the gallery --------------------------------------------------------------------------
    app.mount("/static", StaticFiles(directory=GALLERY), name="static")

    @app.get("/", include_in_schema=False)
    async def gallery():
        return FileResponse(GALLERY / "index.html", media_type="text/html")

    return app


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


__all__ = ["create_app", "ServingSettings"]
