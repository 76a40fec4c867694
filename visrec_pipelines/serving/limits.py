"""Request body limits, enforced while the body streams in (before anything is parsed or spooled).

A declared Content-Length over the limit is refused at once; a chunked or lying body is cut off
as soon as it passes the limit. Both answer 413 with a JSON reason, never 5xx.
"""
import json

from starlette.exceptions import HTTPException


class BodyLimit:
    """Pure ASGI middleware: ``limits`` maps a path prefix to its byte limit (longest prefix wins)."""

    def __init__(self, app, limits: dict[str, int], default: int):
        self.app = app
        self.limits = sorted(limits.items(), key=lambda kv: -len(kv[0]))
        self.default = default

    def limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.default

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["path"])
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await _reply(send, 400, "Content-Length is not a number")
        if declared is not None and declared > limit:
            return await _reply(send, 413, f"request body of {declared:,} bytes is over the {limit:,}-byte limit")
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # raised inside the route's body parsing, so FastAPI turns it into the response
                    raise HTTPException(413, f"request body is over the {limit:,}-byte limit")
            return message

        await self.app(scope, limited_receive, send)


async def _reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
