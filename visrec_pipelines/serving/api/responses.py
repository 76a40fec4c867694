"""Ready-made JSON bytes (orjson, numpy-aware): the hot routes skip response-model validation."""
import orjson
from starlette.responses import Response

JSON = "application/json"


def fast_json(payload, status: int = 200) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type=JSON)
