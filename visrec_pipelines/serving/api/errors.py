"""Exceptions the routes and queries raise, as HTTP answers: not loaded yet -> 503 (retry soon),
a hand-parsed parameter out of bounds -> 422 in FastAPI's own format, unknown item -> 404."""
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.requests import Request

from ..queries import NotFound, NotReady
from .params import InvalidParameter


async def _not_ready(request: Request, exc: NotReady):
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


async def _invalid(request: Request, exc: InvalidParameter):
    return JSONResponse({"detail": [{"loc": exc.where, "msg": exc.message, "type": "value_error"}]},
                        status_code=422)


async def _not_found(request: Request, exc: NotFound):
    return JSONResponse({"detail": exc.message}, status_code=404)


def add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(NotReady, _not_ready)
    app.add_exception_handler(InvalidParameter, _invalid)
    app.add_exception_handler(NotFound, _not_found)
