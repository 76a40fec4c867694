"""Request parameters, each written once: name, default, bounds and description.

Three uses derive from these specs, so a limit cannot drift between them:
- ``.annotated`` gives the FastAPI ``Query``/``Path`` type of ordinary routes (FastAPI validates);
- ``HotParameters.read`` is the hand parser of the two hot routes (same rules, same 422 body);
- ``HotParameters.openapi`` documents that parser, since FastAPI sees no parameters there.
The hot routes parse by hand because FastAPI's per-request parameter solving costs ~20 us, as much
as the recommendation itself.
"""
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query
from pydantic import StringConstraints
from starlette.requests import Request

from ..thumbnails import BUCKETS

MAX_K = 100
MAX_TAGS = 20
MAX_TAG_LENGTH = 64
MAX_ID = 128


class InvalidParameter(Exception):
    """A hand-parsed parameter broke its spec; answered 422 like FastAPI's own validation errors."""

    def __init__(self, where: list, message: str):
        super().__init__(message)
        self.where, self.message = where, message


@dataclass(frozen=True)
class IntParam:
    name: str
    default: int
    minimum: int
    maximum: int
    description: str | None = None

    @property
    def annotated(self):
        return Annotated[int, Query(ge=self.minimum, le=self.maximum, description=self.description)]

    def openapi(self) -> dict:
        described = {"description": self.description} if self.description else {}
        return {"name": self.name, "in": "query", "required": False, **described,
                "schema": {"type": "integer", "minimum": self.minimum, "maximum": self.maximum,
                           "default": self.default}}

    def parse(self, raw: str | None) -> int:
        if raw is None:
            return self.default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidParameter(["query", self.name],
                                   f"{self.name} must be an integer, got {raw[:20]!r}") from None
        if not self.minimum <= value <= self.maximum:
            raise InvalidParameter(["query", self.name],
                                   f"{self.name} must be between {self.minimum} and {self.maximum}")
        return value


@dataclass(frozen=True)
class FloatParam:
    name: str
    default: float
    minimum: float
    maximum: float
    description: str | None = None

    def openapi(self) -> dict:
        described = {"description": self.description} if self.description else {}
        return {"name": self.name, "in": "query", "required": False, **described,
                "schema": {"type": "number", "minimum": self.minimum, "maximum": self.maximum,
                           "default": self.default}}

    def parse(self, raw: str | None) -> float:
        if raw is None:
            return self.default
        try:
            value = float(raw)
        except ValueError:
            raise InvalidParameter(["query", self.name], f"{self.name} must be a number, got {raw[:20]!r}") from None
        if not self.minimum <= value <= self.maximum:       # NaN fails this too
            raise InvalidParameter(["query", self.name],
                                   f"{self.name} must be between {self.minimum:g} and {self.maximum:g}")
        return value


@dataclass(frozen=True)
class TagsParam:
    """Repeated and/or comma-separated tags. The limits hold after the commas are split: at most
    ``max_items`` distinct tags of at most ``max_length`` characters each, and a value longer than
    ``max_items`` tags could fill is refused before it is split, so one request costs at most
    ``max_items`` x ``max_raw`` characters of work (linear: de-duplication keeps a dict)."""
    name: str
    max_items: int
    max_length: int
    description: str

    @property
    def max_raw(self) -> int:
        return self.max_items * (self.max_length + 1)

    @property
    def annotated(self):
        """The parsed list, for FastAPI routes: the raw values validated by FastAPI, then ``parse``."""
        spec = self
        raw_type = list[Annotated[str, StringConstraints(max_length=self.max_raw)]] | None

        async def parsed_tags(values: Annotated[raw_type, Query(alias=spec.name, description=spec.description,
                                                                 max_length=spec.max_items)] = None) -> list[str]:
            return spec.parse(values or [])

        return Annotated[list[str], Depends(parsed_tags)]

    def openapi(self) -> dict:
        return {"name": self.name, "in": "query", "required": False, "description": self.description,
                "schema": {"type": "array", "items": {"type": "string", "maxLength": self.max_raw},
                           "maxItems": self.max_items}}

    def parse(self, raw: list[str]) -> list[str]:
        """["a,b", " a", ""] -> ["a", "b"] (whitespace trimmed, empty dropped, first-seen order)."""
        if not raw:
            return []
        if len(raw) > self.max_items:
            raise self._invalid(f"at most {self.max_items} {self.name}")
        found: dict[str, None] = {}
        for value in raw:
            if len(value) > self.max_raw:
                raise self._invalid(f"at most {self.max_items} {self.name} of at most {self.max_length} characters")
            for tag in value.split(","):
                tag = tag.strip()
                if tag:
                    if len(tag) > self.max_length:
                        raise self._invalid(f"a tag has at most {self.max_length} characters")
                    found[tag] = None
            if len(found) > self.max_items:
                raise self._invalid(f"at most {self.max_items} {self.name} (after splitting commas)")
        return list(found)

    def _invalid(self, message: str) -> InvalidParameter:
        return InvalidParameter(["query", self.name], message)


@dataclass(frozen=True)
class IdParam:
    name: str
    max_length: int
    min_length: int = 1

    @property
    def annotated(self):
        return Annotated[str, Path(min_length=self.min_length, max_length=self.max_length)]

    def openapi(self) -> dict:
        return {"name": self.name, "in": "path", "required": True,
                "schema": {"type": "string", "minLength": self.min_length, "maxLength": self.max_length}}

    def parse(self, value: str) -> str:
        if not self.min_length <= len(value) <= self.max_length:
            raise InvalidParameter(["path", self.name],
                                   f"{self.name} must be {self.min_length} to {self.max_length} characters")
        return value


# --- the spec -------------------------------------------------------------------------------------
K = IntParam("k", 10, 1, MAX_K, "how many items")
TAGS = TagsParam("tags", MAX_TAGS, MAX_TAG_LENGTH,
                 f"only items with ALL these tags (repeat the parameter or comma-separate; at most {MAX_TAGS} "
                 f"tags of at most {MAX_TAG_LENGTH} characters)")
DIVERSITY = FloatParam("diversity", 0.0, 0.0, 1.0,
                       "0: the champion's order; up to 1: more variety in looks (maximal marginal relevance over "
                       "the image embeddings of the champion's best items)")
USER_ID = IdParam("user_id", MAX_ID)
ITEM_ID = IdParam("item_id", MAX_ID)
USERS_LIMIT = IntParam("limit", 100, 1, 1000)
HISTORY_LIMIT = IntParam("limit", 24, 1, 500)
THUMBNAIL_SIZE = IntParam("size", 256, 16, BUCKETS[-1],
                          "longest side in pixels, rounded up to " + ", ".join(map(str, BUCKETS)))

# FastAPI types of the ordinary routes (the parameter's name in the route must match the spec's)
KQuery, TagsQuery = K.annotated, TAGS.annotated
UserIdPath, ItemIdPath = USER_ID.annotated, ITEM_ID.annotated
UsersLimitQuery, HistoryLimitQuery = USERS_LIMIT.annotated, HISTORY_LIMIT.annotated
ThumbnailSizeQuery = THUMBNAIL_SIZE.annotated
MAX_QUERY_TEXT = 200
TextQuery = Annotated[str, Query(min_length=1, max_length=MAX_QUERY_TEXT, pattern=r"\S",
                                 description="what to look for, in words (\"red summer dress\")")]


class HotParameters:
    """(id, k, tags) of a hot route, read from the request by hand with the rules above, and the
    route's own ``options`` (``read_options``)."""

    def __init__(self, path: IdParam, *options: FloatParam):
        self.path, self.options = path, options
        self.openapi = {"parameters": [path.openapi(), K.openapi(), TAGS.openapi(), *(o.openapi() for o in options)]}

    def read(self, request: Request) -> tuple[str, int, list[str]]:
        value = self.path.parse(request.path_params[self.path.name])
        query = request.query_params
        return value, K.parse(query.get(K.name)), TAGS.parse(query.getlist(TAGS.name))

    def read_options(self, request: Request) -> dict:
        return {o.name: o.parse(request.query_params.get(o.name)) for o in self.options}


def tag_list(values: list[str] | None) -> list[str]:
    """?tags=a&tags=b or ?tags=a,b -> ["a", "b"] (the spec's ``TAGS.parse``, limits included)."""
    return TAGS.parse(list(values or []))
