"""The two hot routes: a user's recommendations and an item's visually similar items.

They are ``async def`` (no thread hop), read their parameters by hand (``params.HotParameters``:
the spec's rules, FastAPI's 422 format, documented through ``openapi_extra``) and return prebuilt
JSON bytes: FastAPI's parameter solving and response validation would cost as much as the
recommendation itself, and the benchmark's baseline (/healthz) pays for neither.
"""
from fastapi import APIRouter
from starlette.requests import Request

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
