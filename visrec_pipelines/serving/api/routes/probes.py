"""Probes and operations: liveness, readiness, what is served and what failed, reload now."""
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..deps import ApiKey, ImagesDep, ManagerDep, SettingsDep
from ..models import Detail

router = APIRouter(tags=["probes"])


@router.get("/healthz", summary="Alive (always 200 while the process runs)")
async def healthz():
    return {"status": "ok"}


@router.get("/readyz", summary="Ready: 200 once a champion and an index are loaded, else 503",
            responses={503: {"model": Detail}})
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


@router.get("/status", summary="What is served, since when, and what failed to load")
async def status(manager: ManagerDep, images: ImagesDep, settings: SettingsDep):
    return {**manager.status(), "image_search": images.status(), "api_key_required": bool(settings.api_key)}


@router.post("/admin/reload", dependencies=[ApiKey],
             summary="Check for a new champion or index now (the watcher also does, every poll_seconds)")
def admin_reload(manager: ManagerDep):
    return {**manager.reload(), "status": manager.status()}
