"""The serving app for one dataset (FastAPI; OpenAPI docs at /docs, the gallery at /).

``create_app`` assembles the pieces: the state manager and the image search (on ``app.state``,
where ``api.deps`` finds them), the routers of ``api.routes``, the exception handlers and the
request-body limits. Hot endpoints (/recommendations, /items/{id}/similar) are ``async def`` and
answer from the in-memory state in well under a millisecond of work, so they run on the event loop
without a thread hop, and are matched first, as plain Starlette routes (``recommend.plain_routes``);
endpoints that touch files or the encoder (events, uploads, images) are plain ``def`` and run in
the thread pool.
"""
import contextlib

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ..settings import Settings
from .api.errors import add_exception_handlers
from .api.routes import ROUTERS, recommend, search
from .api.routes.gallery import GALLERY_DIR
from .image_search import ImageSearch
from .inbox import EventInbox
from .limits import BodyLimit
from .manager import StateManager
from .thumbnails import Thumbnails


def create_app(settings: Settings | None = None, manager: StateManager | None = None,
               start_background: bool = True) -> FastAPI:
    """The app for ``settings.dataset``. ``start_background``: load state and encoder in background
    threads at start-up, and keep watching for new versions (tests drive ``manager.reload()``)."""
    settings = settings or Settings()
    manager = manager or StateManager(settings)
    images = ImageSearch.from_settings(settings)

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
    app.state.settings, app.state.manager, app.state.images = settings, manager, images
    app.state.inbox, app.state.thumbnails = EventInbox(), Thumbnails()
    app.add_middleware(BodyLimit, limits={search.PATH: settings.max_upload_bytes + 64 * 1024,
                                          "/events": settings.max_json_bytes}, default=64 * 1024)
    add_exception_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    app.router.routes[:0] = recommend.plain_routes()      # the hot routes, matched first
    search.describe_limits(app, settings)
    app.mount("/static", StaticFiles(directory=GALLERY_DIR), name="static")
    return app


__all__ = ["create_app"]
