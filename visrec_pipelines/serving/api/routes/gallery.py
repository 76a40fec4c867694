"""The web gallery: one page (/) and its static files (/static, mounted by ``create_app``)."""
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

GALLERY_DIR = Path(__file__).resolve().parents[2] / "gallery"
router = APIRouter()


@router.get("/", include_in_schema=False)
async def gallery():
    return FileResponse(GALLERY_DIR / "index.html", media_type="text/html")
