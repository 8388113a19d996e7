"""Request bodies above the configured size get 413 before anything reads them whole."""

from __future__ import annotations

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_service.api.problems import problem_response

__all__ = ["BodyLimitMiddleware"]


class _TooLargeError(StarletteHTTPException):
    # An HTTPException, so that FastAPI's body parsing lets it through to the 413 handler
    # instead of turning it into "400 error parsing the body".
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _detail(max_bytes))


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes``: by ``Content-Length`` at once, otherwise as they stream.

    A chunked body is counted as it arrives, so a client that sends no length (or a false one)
    cannot make the service buffer more than the limit either.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLargeError(self.max_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except _TooLargeError:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "Content Too Large",
            _detail(self.max_bytes),
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _detail(max_bytes: int) -> str:
    return f"The request body is larger than {max_bytes} bytes; nothing was written."


def _content_length(scope: Scope) -> int | None:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
