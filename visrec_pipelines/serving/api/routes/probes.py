"""Probes and operations: liveness, readiness, what is served and what failed, reload now.

Their bodies are documented (``responses``), not validated on the way out: a probe must answer
whatever the state, and the contract test (schemathesis) checks they agree with the documents."""
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..deps import ApiKey, ImagesDep, InboxDep, ManagerDep, SettingsDep, ThumbnailsDep
from ..errors import BODY, documented
from ..status_models import Health, NotReadyBody, Ready, ReloadOutcome, Status

router = APIRouter(tags=["probes"])


@router.get("/healthz", summary="Alive (always 200 while the process runs)",
            responses={200: {"model": Health}})       # documented, not validated: the cheapest route
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", summary="Ready: 200 once a champion and an index are loaded, else 503",
            responses={200: {"model": Ready}, 503: {"model": NotReadyBody, "description": "Not ready yet"}})
async def readyz(manager: ManagerDep):
    status = manager.status()
    if not status["ready"]:
        missing = [name for name in ("champion", "index") if status[name] is None]
        return JSONResponse({"ready": False, "missing": missing, "fallback": status["fallback"],
                             "last_error": status["last_error"]}, status_code=503)
    return {"ready": True, "champion_version": status["champion"]["version"],
            "index_version": status["index"]["version"],
            "degraded": status["fallback"] is not None, "fallback": status["fallback"],
            "last_error": status["last_error"]}


def full_status(manager, images, settings, thumbnails, inbox) -> dict:
    return {**manager.status(), "image_search": images.status(), "api_key_required": bool(settings.api_key),
            "thumbnails": thumbnails.stats(), "feedback": inbox.status()}


@router.get("/status", summary="What is served, since when, and what failed to load",
            responses={200: {"model": Status}})
async def status(manager: ManagerDep, images: ImagesDep, settings: SettingsDep, thumbnails: ThumbnailsDep,
                 inbox: InboxDep):
    return full_status(manager, images, settings, thumbnails, inbox)


@router.post("/admin/reload", dependencies=[ApiKey],
             responses={200: {"model": ReloadOutcome}, **documented(*BODY, 401)},
             summary="Check for a new champion or index now, retrying versions that failed "
                     "(the watcher also checks, every poll_seconds)")
def admin_reload(manager: ManagerDep, images: ImagesDep, settings: SettingsDep, thumbnails: ThumbnailsDep,
                 inbox: InboxDep):
    return {**manager.reload(force=True), "status": full_status(manager, images, settings, thumbnails, inbox)}
