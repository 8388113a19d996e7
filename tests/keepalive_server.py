"""Local HTTP/1.1 servers that keep connections open and count them: how an HTTP client's pool,
and its failures, are seen from the other end of its sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

__all__ = ["Answer", "Scripted", "keepalive_server", "scripted"]

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]]
"""Answers one request (its head and body, as it arrived) on the connection it came on."""

_BODY = b'{"resourceType":"Patient","id":"p"}'
_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


@dataclass
class Scripted:
    url: str
    received: list[bytes] = field(default_factory=list)
    """Each request's head and body, as it arrived."""
    connections: int = 0

    @property
    def requests(self) -> int:
        return len(self.received)


@asynccontextmanager
async def scripted(*answers: Answer) -> AsyncIterator[Scripted]:
    """Answers the n-th request with ``answers[n]`` (the last one for any after it), on the
    connection it came on, for as long as the client keeps it open."""
    state = Scripted("")

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                state.received.append(request)
                await answers[min(state.requests, len(answers)) - 1](reader, writer, request)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield state


@asynccontextmanager
async def keepalive_server(delay: float = 0.02) -> AsyncIterator[Scripted]:
    """Answers every request with a small FHIR resource after ``delay`` seconds."""

    async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: bytes) -> None:
        await asyncio.sleep(delay)
        writer.write(_ANSWER)
        await writer.drain()

    async with scripted(answer) as server:
        yield server
