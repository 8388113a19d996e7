"""The command line: ``serve``, ``token``, ``map``, ``import``, ``export`` and ``hapi``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from fhir_service.cli.local_hapi import HapiBuildError, HapiStartError, LocalHapi, build
from fhir_service.cli.serve import serve
from fhir_service.logs import configure_logging
from fhir_service.security.roles import ROLE_SCOPES
from fhir_service.settings import Settings, get_settings

__all__ = ["main"]

_log = logging.getLogger("fhir_service.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    settings = get_settings()
    parser = _parser(settings)
    args = parser.parse_args(argv)
    configure_logging(settings.log_level)
    try:
        code: int = args.handler(args, settings)
    except (HapiBuildError, HapiStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


def _parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-service", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serving = commands.add_parser(
        "serve", help="run the service (starts the local HAPI when no HAPI URL is configured)"
    )
    serving.add_argument("--host", default=settings.host)
    serving.add_argument("--port", type=int, default=settings.port)
    serving.set_defaults(handler=serve)

    token = commands.add_parser(
        "token", help="mint a bearer token of the local development issuer (development only)"
    )
    token.add_argument("--role", required=True, choices=sorted(ROLE_SCOPES))
    token.add_argument("--organization", help="the care unit acted for, e.g. hsa-id|SE...")
    token.add_argument("--patient", help="the patient, e.g. personnummer|19121212-1212")
    token.add_argument(
        "--fhir-user",
        help="a relative's RelatedPerson (fhirUser), as POST /consents answered it",
    )
    token.add_argument("--subject", help="the user's id (sub); default local-<role>")
    token.add_argument("--lifetime", type=_positive, default=3600, help="seconds (3600)")
    token.set_defaults(handler=_token)

    client = commands.add_parser(
        "client",
        help="register a SMART backend-services client of the local development issuer "
        "(development only): its token endpoint then takes the client's signed assertions",
    )
    client.add_argument("--id", required=True, help="the client id (iss and sub of its JWTs)")
    client.add_argument("--role", required=True, choices=sorted(ROLE_SCOPES))
    client.add_argument("--jwks", required=True, type=Path, help="a JWKS file of its public keys")
    client.add_argument("--organization", help="the care unit acted for, e.g. hsa-id|SE...")
    client.add_argument("--patient", help="the patient, e.g. personnummer|19121212-1212")
    client.set_defaults(handler=_client)

    mapping = commands.add_parser("map", help="map a contract to its FHIR Bundle and back")
    map_commands = mapping.add_subparsers(required=True, metavar="DIRECTION")
    to_fhir = map_commands.add_parser("to-fhir", help="print the transaction Bundle of a contract")
    to_fhir.add_argument("contract", type=Path, help="contract JSON file")
    to_fhir.add_argument(
        "--language", choices=["sv", "nb", "en"], default=settings.narrative_language
    )
    to_fhir.set_defaults(handler=_map_to_fhir)
    from_fhir = map_commands.add_parser("from-fhir", help="print the contract held by a Bundle")
    from_fhir.add_argument("bundle", type=Path, help="FHIR Bundle JSON file")
    from_fhir.set_defaults(handler=_map_from_fhir)

    default_hapi_url = str(settings.hapi_url or settings.embedded_hapi_url)
    bulk_import = commands.add_parser(
        "import",
        help="import contracts from an NDJSON file, one contract per line",
        description="Exit status: 0 all imported or already present, 1 some lines rejected, "
        "2 stopped because HAPI failed (run it again to resume).",
    )
    bulk_import.add_argument("input", type=Path, help="NDJSON file of contracts")
    bulk_import.add_argument("--hapi-url", default=default_hapi_url)
    bulk_import.add_argument(
        "--batch-size", type=_positive, default=25, help="contracts per transaction"
    )
    bulk_import.add_argument(
        "--concurrency", type=_positive, default=2, help="transactions in flight at once"
    )
    bulk_import.add_argument(
        "--state", type=Path, help="progress file (default: INPUT.import-state.json)"
    )
    bulk_import.add_argument(
        "--language", choices=["sv", "nb", "en"], default=settings.narrative_language
    )
    bulk_import.set_defaults(handler=_bulk_import)

    bulk_export = commands.add_parser(
        "export",
        help="export every contract as NDJSON, one contract per line",
        description="Exit status: 0 all exported, 1 some stored contracts could not be read, "
        "2 stopped because HAPI failed.",
    )
    bulk_export.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    bulk_export.add_argument("--hapi-url", default=default_hapi_url)
    bulk_export.add_argument(
        "--page-size", type=_positive, default=50, help="contracts per HAPI request"
    )
    bulk_export.add_argument(
        "--since",
        type=_aware_datetime,
        help="only contracts changed at or after this ISO 8601 time (with its offset)",
    )
    bulk_export.set_defaults(handler=_bulk_export)

    hapi = commands.add_parser("hapi", help="build and run the local HAPI FHIR server")
    hapi_commands = hapi.add_subparsers(required=True, metavar="ACTION")
    default_data = settings.data_dir / "hapi"

    def server_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--port", type=int, default=settings.embedded_hapi_port)
        sub.add_argument("--data-dir", type=Path, default=default_data)

    build_cmd = hapi_commands.add_parser("build", help="build the launcher jar with Maven")
    build_cmd.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build_cmd.set_defaults(handler=_hapi_build)

    start = hapi_commands.add_parser("start", help="start in the background, wait until ready")
    server_options(start)
    start.add_argument("--jdbc-url", help="use this database instead of the H2 file")
    start.add_argument(
        "--timeout", type=float, default=settings.embedded_hapi_start_timeout_seconds
    )
    start.set_defaults(handler=_hapi_start)

    stop = hapi_commands.add_parser("stop", help="stop the background server")
    server_options(stop)
    stop.set_defaults(handler=_hapi_stop)

    status = hapi_commands.add_parser("status", help="say whether the server runs and answers")
    server_options(status)
    status.set_defaults(handler=_hapi_status)

    run = hapi_commands.add_parser("run", help="run in the foreground until interrupted")
    server_options(run)
    run.add_argument("--memory", action="store_true", help="in-memory H2: nothing is kept")
    run.add_argument("--jdbc-url", help="use this database instead of the H2 file")
    run.set_defaults(handler=_hapi_run)
    return parser


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_service.cli import tokens

    return tokens.mint(
        settings,
        args.role,
        subject=args.subject,
        organization=args.organization,
        patient=args.patient,
        fhir_user=args.fhir_user,
        lifetime_seconds=args.lifetime,
    )


def _client(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_service.cli import tokens

    return tokens.register_client(
        settings,
        args.id,
        args.role,
        jwks=args.jwks,
        organization=args.organization,
        patient=args.patient,
    )


def _map_to_fhir(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_service.cli import mapping

    return mapping.to_fhir(args.contract, args.language)


def _map_from_fhir(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_service.cli import mapping

    return mapping.from_fhir(args.bundle)


def _bulk_import(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_service.cli import bulk

    return bulk.import_file(
        args.input,
        hapi_url=args.hapi_url,
        timeout=settings.hapi_timeout_seconds,
        language=args.language,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        state_path=args.state,
    )


def _bulk_export(args: argparse.Namespace, settings: Settings) -> int:
    from fhir_service.cli import bulk

    return bulk.export_file(
        args.output,
        hapi_url=args.hapi_url,
        timeout=settings.hapi_timeout_seconds,
        page_size=args.page_size,
        since=args.since,
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def _aware_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset, e.g. Z or +01:00")
    return value


def _hapi_build(args: argparse.Namespace, settings: Settings) -> int:
    jar = build(force=args.force)
    print(f"built {jar}")
    return 0


def _hapi_start(args: argparse.Namespace, settings: Settings) -> int:
    hapi = LocalHapi(port=args.port, data_dir=args.data_dir, jdbc_url=args.jdbc_url)
    pid = hapi.start_detached(args.timeout)
    print(f"HAPI FHIR running at {hapi.base_url} (pid {pid}, log {args.data_dir / 'hapi.log'})")
    return 0


def _hapi_stop(args: argparse.Namespace, settings: Settings) -> int:
    hapi = LocalHapi(port=args.port, data_dir=args.data_dir)
    if hapi.stop_detached():
        print("HAPI FHIR stopped")
        return 0
    print(f"no HAPI FHIR started from {args.data_dir} is running")
    return 1


def _hapi_status(args: argparse.Namespace, settings: Settings) -> int:
    hapi = LocalHapi(port=args.port, data_dir=args.data_dir)
    pid = hapi.detached_pid()
    answering = hapi.is_answering()
    process = f"pid {pid}" if pid is not None else "no process from this data directory"
    state = "answers" if answering else "does not answer"
    print(f"HAPI FHIR at {hapi.base_url} {state} ({process})")
    return 0 if answering else 3


def _hapi_run(args: argparse.Namespace, settings: Settings) -> int:
    hapi = LocalHapi(
        port=args.port, data_dir=None if args.memory else args.data_dir, jdbc_url=args.jdbc_url
    )
    hapi.start(log=sys.stdout.buffer)
    try:
        hapi.wait_until_ready(settings.embedded_hapi_start_timeout_seconds)
        print(f"HAPI FHIR ready at {hapi.base_url}; Ctrl-C stops it", flush=True)
        hapi.wait()
    except KeyboardInterrupt:
        pass
    finally:
        hapi.stop()
    return 0
