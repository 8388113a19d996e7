"""A TCP proxy a test can cut and restore: HAPI going away and coming back, no restart needed;
or one that lets requests through and drops the answers: HAPI working on a write nobody hears of."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from tests.support import free_port

__all__ = ["Proxy", "running_proxy"]


class Proxy:
    """Forwards ``127.0.0.1:port`` to ``target``; :meth:`cut` refuses and drops connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.swallowing = False
        """While True, what the target answers is dropped: requests arrive, answers never do."""
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> None:
        """Accept and forward connections again."""
        listener = socket.create_server(("127.0.0.1", self.port))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening (new connections are refused) and drop the ones that are open."""
        if self._listener is not None:
            # Closing alone leaves a thread blocked in accept() listening; shutdown wakes it.
            _close(self._listener)
            self._listener = None
        with self._lock:
            for sock in self._open:
                _close(sock)
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            pipes = ((client, upstream, lambda: False), (upstream, client, self._swallows))
            for source, sink, swallow in pipes:
                threading.Thread(target=_pipe, args=(source, sink, swallow), daemon=True).start()

    def _swallows(self) -> bool:
        return self.swallowing


def _pipe(source: socket.socket, sink: socket.socket, swallow: Callable[[], bool]) -> None:
    try:
        while chunk := source.recv(65536):
            if not swallow():
                sink.sendall(chunk)
    except OSError:
        pass
    finally:
        _close(sink)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def running_proxy(target: tuple[str, int]) -> Iterator[Proxy]:
    """A proxy to ``target``, forwarding for the duration of the block unless cut."""
    proxy = Proxy(target)
    proxy.restore()
    try:
        yield proxy
    finally:
        proxy.cut()
