"""A local HTTP/1.1 server that keeps connections open and counts them: how an HTTP client's
pool is seen from the other end of its sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

__all__ = ["KeepAliveServer", "keepalive_server"]

_BODY = b'{"resourceType":"Patient","id":"p"}'
_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


@dataclass
class KeepAliveServer:
    url: str
    connections: int = 0
    requests: int = 0


@asynccontextmanager
async def keepalive_server(delay: float = 0.02) -> AsyncIterator[KeepAliveServer]:
    """Answers every request with a small FHIR resource after ``delay`` seconds, on the same
    connection for as long as the client keeps it."""
    state = KeepAliveServer("")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                state.requests += 1
                await asyncio.sleep(delay)
                writer.write(_ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield state
