"""Exceptions the routes and queries raise, as HTTP answers, and the error responses each route
documents (``documented``), so the OpenAPI document says what is really returned.

Not loaded yet or unavailable now -> 503 (retry soon), a hand-parsed parameter out of bounds -> 422
in FastAPI's own format (a list of ``{loc, msg, type}``), unknown item -> 404.
"""
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import Request

from ..problems import Unavailable
from ..queries import NotFound
from .models import Detail, ValidationProblem
from .params import InvalidParameter

ERRORS: dict[int, tuple[type[BaseModel], str]] = {
    400: (Detail, "Malformed request: a Content-Length that is not a number, a body that cannot be parsed"),
    401: (Detail, "The X-API-Key header is missing or wrong"),
    404: (Detail, "No such item, or it has no image"),
    409: (Detail, "An event id already accepted with other content"),
    413: (Detail, "The body, the upload or the batch is over its limit"),
    415: (Detail, "The upload is not a supported picture"),
    422: (ValidationProblem, "A parameter or field breaks its rules"),
    503: (Detail, "Not loaded yet or unavailable now (the detail says why, /status more); retry later"),
}
BODY = (400, 413)   # every route with a body: the body limit answers these before the route runs


def documented(*codes: int, models: dict[int, type[BaseModel]] | None = None) -> dict:
    """``responses=`` for a route that can answer these codes (``models`` overrides a body)."""
    models = models or {}
    return {code: {"model": models.get(code, ERRORS[code][0]), "description": ERRORS[code][1]}
            for code in codes}


async def _unavailable(request: Request, exc: Unavailable):
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


async def _invalid(request: Request, exc: InvalidParameter):
    return JSONResponse({"detail": [{"loc": exc.where, "msg": exc.message, "type": "value_error"}]},
                        status_code=422)


async def _not_found(request: Request, exc: NotFound):
    return JSONResponse({"detail": exc.message}, status_code=404)


def add_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Unavailable, _unavailable)      # NotReady included
    app.add_exception_handler(InvalidParameter, _invalid)
    app.add_exception_handler(NotFound, _not_found)
