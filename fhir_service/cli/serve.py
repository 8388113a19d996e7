"""``fhir-service serve``: the service on uvicorn, with the local HAPI started beside it when no
HAPI URL is configured (and stopped with it)."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from types import FrameType

from fhir_service.cli.local_hapi import HapiStartError, LocalHapi
from fhir_service.settings import Settings

__all__ = ["serve"]

_log = logging.getLogger("fhir_service.cli")


def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until stopped; the exit code."""
    import uvicorn

    from fhir_service.api import create_app

    embedded: LocalHapi | None = None
    if settings.hapi_url is None:
        embedded = LocalHapi(port=settings.embedded_hapi_port, data_dir=settings.data_dir / "hapi")
        if embedded.is_answering():
            _log.info("using the local HAPI already running", extra={"url": embedded.base_url})
            embedded = None
        else:
            _start_embedded(embedded, settings)
        settings = settings.model_copy(update={"hapi_url": settings.embedded_hapi_url})
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it; without a handler of ours the
    # process would die right there and leave the embedded HAPI running.
    signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        app = create_app(settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if embedded is not None:
            embedded.stop()
        return 2
    # What is built by now lives as long as the process. Frozen, it is left out of the cyclic
    # garbage collector's full passes, which otherwise scan all of it (some 140,000 objects)
    # every few hundred requests while every request waits: 80-140 ms each, measured.
    gc.collect()
    gc.freeze()
    # A young collection every 700 objects (Python's default) catches the objects of the
    # requests in flight still alive and moves them to older generations, which then fill with
    # them and are collected in turn, full passes included. Every 10,000: under 20 clients of
    # `bench.load`, the collector took 2 % of the service's CPU instead of 10-17 %, with no full
    # pass in a minute. Garbage in cycles waits longer to be freed: memory, not time.
    gc.set_threshold(10_000, 10, 10)
    try:
        config = uvicorn.Config(app, host=args.host, port=args.port, log_config=None)
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass
    finally:
        if embedded is not None:
            _log.info("stopping the embedded HAPI")
            embedded.stop()
    return 0


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _start_embedded(hapi: LocalHapi, settings: Settings) -> None:
    assert hapi.data_dir is not None
    hapi.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = hapi.data_dir / "hapi.log"
    _log.info("starting the embedded HAPI", extra={"url": hapi.base_url, "log": str(log_path)})
    with log_path.open("ab") as log:
        hapi.start(log=log)
    try:
        hapi.wait_until_ready(settings.embedded_hapi_start_timeout_seconds, log_path)
    except HapiStartError:
        hapi.stop()
        raise
    _log.info("embedded HAPI ready", extra={"url": hapi.base_url})
