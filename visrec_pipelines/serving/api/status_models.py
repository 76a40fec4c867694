"""The bodies of the probes and operations routes (/healthz, /readyz, /status, /admin/reload) and of
the catalogue routes, for the OpenAPI documentation. The routes return plain dicts or prebuilt JSON
of these shapes; ``tests/serving/test_openapi_contract.py`` checks they agree (schemathesis)."""
from pydantic import BaseModel, Field

from .models import ItemCard


class Health(BaseModel):
    status: str = Field(description="always ok while the process runs")


class LoadError(BaseModel):
    at: str | None
    component: str = Field(description="champion | index | state")
    version: str | None
    error: str = Field(description="what failed: exception type and message, no absolute paths")


class Ready(BaseModel):
    ready: bool
    champion_version: str
    index_version: str
    degraded: bool = Field(description="true: the champion serving is not the alias's version")
    fallback: str | None
    last_error: LoadError | None


class NotReadyBody(BaseModel):
    ready: bool
    missing: list[str] = Field(description="champion and/or index")
    fallback: str | None
    last_error: LoadError | None


class ChampionStatus(BaseModel):
    version: str
    ranker: str
    users: int
    items: int
    loaded_at: str | None
    fast_path: bool
    ann_recall: float | None = Field(None, description="recall of the exact top 200 by the IVF the best items "
                                                       "come from (large catalogues); null: every item scored")
    prefilled: dict | None = Field(None, description="how many known users' best items (and reasons, for a "
                                                    "champion that gives them) were computed at load "
                                                    "(users, of, seconds); null: prefill is off")


class IndexStatus(BaseModel):
    version: str
    items: int
    dim: int
    loaded_at: str | None
    source: str
    location: str = Field(description="which snapshot file or Milvus server (no absolute path)")
    neighbour_table: bool
    ann_recall: float | None = Field(None, description="recall of the exact top 50 by the IVF that filtered and "
                                                       "picture searches use (large catalogues); null: exact scans")


class ImageSearchStatus(BaseModel):
    state: str = Field(description="disabled | loading | ready | failed")
    encoder_id: str | None = None
    dim: int | None = None
    runtime: str | None = None
    error: str | None = None


class ThumbnailStatus(BaseModel):
    entries: int
    cache_bytes: int
    budget_bytes: int
    decodes: int
    hits: int
    peak_decodes: int
    max_decodes: int
    peak_decoded_pixels: int
    buckets: list[int]


class FeedbackStatus(BaseModel):
    problem: str | None = Field(description="why POST /events answers 503 now, if it does")
    repairs: list[str] = Field(description="what the landing area had to repair (a damaged ledger)")


class Status(BaseModel):
    dataset: str
    ready: bool
    champion: ChampionStatus | None
    champion_alias_version: str | None
    fallback: str | None
    index: IndexStatus | None
    catalogue_items: int
    problems: list[str] = Field(description="what the serving state does without (an unreadable table)")
    last_check_at: str | None
    last_swap_at: str | None
    swaps: int
    last_error: LoadError | None
    errors: list[LoadError]
    poll_seconds: float
    image_search: ImageSearchStatus
    api_key_required: bool
    thumbnails: ThumbnailStatus
    feedback: FeedbackStatus


class ReloadOutcome(BaseModel):
    swapped: bool
    champion_changed: bool
    index_changed: bool
    status: Status


class ItemDetail(ItemCard):
    indexed: bool
    popularity: float


class UserSummary(BaseModel):
    user_id: str
    history: int


class Users(BaseModel):
    users: list[UserSummary]


class History(BaseModel):
    user_id: str
    known_user: bool
    total: int
    items: list[ItemCard]


class TagCount(BaseModel):
    tag: str
    items: int


class Tags(BaseModel):
    tags: list[TagCount]
