"""The two hot routes: a user's recommendations and an item's visually similar items.

They are ``async def`` (no thread hop), read their parameters by hand (``params.HotParameters``:
the spec's rules, FastAPI's 422 format, documented through ``openapi_extra``) and return prebuilt
JSON bytes: FastAPI's parameter solving and response validation would cost as much as the
recommendation itself, and the benchmark's baseline (/healthz) pays for neither. For the same
reason ``plain_routes`` serves them through plain Starlette routes placed ahead of FastAPI's: its
route matching and dependency solving cost ~50 us a request (measured in process at 100k items;
the answer itself ~35 us). FastAPI's routes stay: they document the endpoints in the OpenAPI schema.
"""
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import Route

from ..deps import state_of
from ..errors import documented
from ..models import Recommendations, SimilarItemsOut
from ..params import DIVERSITY, ITEM_ID, USER_ID, HotParameters
from ..responses import fast_json

router = APIRouter(tags=["recommend"])
RECOMMENDATIONS = HotParameters(USER_ID, DIVERSITY)
SIMILAR = HotParameters(ITEM_ID)


@router.get("/recommendations/{user_id}", response_model=Recommendations,
            responses=documented(422, 503),
            summary="Top k items for a user, with a reason each (which source found it, which of the user's "
                    "items it looks like); ?diversity= trades score for variety; unknown users get popular, "
                    "diverse items",
            openapi_extra=RECOMMENDATIONS.openapi)
async def recommendations(request: Request):
    user_id, k, tags = RECOMMENDATIONS.read(request)
    return fast_json(state_of(request).recommend(user_id, k, tags, **RECOMMENDATIONS.read_options(request)))


@router.get("/items/{item_id}/similar", response_model=SimilarItemsOut,
            responses=documented(404, 422, 503),
            summary="Visually similar items (exact inner product over the image vectors)",
            openapi_extra=SIMILAR.openapi)
async def similar(request: Request):
    item_id, k, tags = SIMILAR.read(request)
    return fast_json(state_of(request).similar_items(item_id, k, tags))


def plain_routes() -> list[Route]:
    """This router's endpoints as Starlette routes (same paths, methods and functions), for
    ``create_app`` to put first; the app's exception handlers apply to them as to any route."""
    return [Route(route.path, route.endpoint, methods=sorted(route.methods), name=f"{route.name}_plain")
            for route in router.routes if isinstance(route, APIRoute)]
