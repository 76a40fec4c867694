"""The API's request and response bodies, for validation and the OpenAPI documentation.

The hot endpoints return prebuilt JSON of these shapes (``responses.fast_json``) instead of going
through response-model validation; the models still document them.
"""
from pydantic import BaseModel, ConfigDict, Field

from ...data.rules import EVENT_TYPES, RATING_RANGE


class LooksLike(BaseModel):
    item_id: str
    title: str
    similarity: float


class Because(BaseModel):
    looks_like: LooksLike | None = None
    shared_tags: list[str] = []
    popularity: float | None = None
    sources: dict[str, int] | None = Field(None, description="two-stage champions: the candidate sources that "
                                           "nominated the item, each with its rank there (0 = their best)")
    pushed_by: dict[str, float] | None = Field(None, description="two-stage champions: what moved the item up or "
                                               "down in the learned ranker, by signal group, largest first")


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
    diversity: float = Field(0.0, description="the MMR weight the list was re-ranked with (0: the champion's order)")
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


class TextSearchOut(BaseModel):
    query: str
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
    """An error said in one sentence."""
    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: query/path/body, then the parameter or field")
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """422: which parameters or fields break their rules (FastAPI's own format, for every route)."""
    detail: list[FieldError]


class UploadProblem(BaseModel):
    """422 of /search/image: a parameter (a list, as ValidationProblem) or the picture (a sentence
    starting with the image quarantine's reason)."""
    detail: str | list[FieldError]
