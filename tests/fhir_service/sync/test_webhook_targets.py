"""The webhook target policy's addresses and the pinned client: one lookup per connection, a
connection only to the address checked, TLS verified for the name."""

from __future__ import annotations

import asyncio
import doctest
import ipaddress
import ssl
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from fhir_service.servicedb.tables import Delivery
from fhir_service.sync import webhook_targets
from fhir_service.sync.webhook_deliveries import DeliveryWorker, Outbox, enqueue
from fhir_service.sync.webhook_registrations import (
    InvalidWebhookError,
    Reach,
    TargetPolicy,
    WebhookRegistry,
)
from fhir_service.sync.webhook_targets import (
    IPAddress,
    PinnedBackend,
    RefusedTargetError,
    admitted_addresses,
    webhook_client,
)
from tests.keepalive_server import keepalive_server
from tests.support import free_port
from tests.webhook_receiver import running_receiver

SECRET = "a-test-secret-that-is-long-enough"
# example.com's address once: public, and never reached here (there is no way out).
PUBLIC = ipaddress.ip_address("93.184.215.14")
LOOPBACK = ipaddress.ip_address("127.0.0.1")


def _answers(*addresses: IPAddress) -> webhook_targets.Resolver:
    def resolve(host: str, port: int) -> Sequence[IPAddress]:
        return addresses

    return resolve


def _no_lookup(host: str, port: int) -> Sequence[IPAddress]:
    raise AssertionError(f"nobody should have looked up {host!r}")


def test_the_pure_helpers_behave_as_their_doctests_say() -> None:
    assert doctest.testmod(webhook_targets).failed == 0


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared address space"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback, 127.0.0.1 inside IPv6"),
        ("::ffff:169.254.169.254", "link-local, 169.254.169.254 inside IPv6"),
        ("64:ff9b::a00:1", "private, 10.0.0.1 inside IPv6"),
        ("2002:7f00:1::1", "loopback, 127.0.0.1 inside a 6to4"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "inside a 6to4 or Teredo"),
        ("localhost", "local or private"),
        ("LOCALHOST.", "local or private"),
        ("hooks.localhost", "local or private"),
    ],
)
def test_addresses_that_are_not_public_are_refused_without_a_lookup(host: str, why: str) -> None:
    with pytest.raises(RefusedTargetError, match=why):
        admitted_addresses(host, 443, allow_private_networks=False, resolver=_no_lookup)


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0", "2852039166", "1.2.3.4.5", "1.0x7f"],
)
def test_ipv4_written_other_than_in_dotted_decimal_is_refused_whatever_the_policy(
    host: str,
) -> None:
    for allow_private_networks in (False, True):
        with pytest.raises(RefusedTargetError, match="dotted-decimal"):
            admitted_addresses(
                host, 443, allow_private_networks=allow_private_networks, resolver=_no_lookup
            )


@pytest.mark.parametrize("host", ["93.184.215.14", "93.184.215.14.", "2606:2800:21f:cb07::1"])
def test_a_public_address_is_its_own_and_needs_no_lookup(host: str) -> None:
    addresses = admitted_addresses(host, 443, allow_private_networks=False, resolver=_no_lookup)

    assert addresses == [ipaddress.ip_address(host.removesuffix("."))]


def test_a_name_is_refused_when_any_of_its_addresses_is_not_public() -> None:
    mixed = _answers(PUBLIC, ipaddress.ip_address("10.1.2.3"))

    with pytest.raises(RefusedTargetError, match=r"resolves to .*10\.1\.2\.3: private"):
        admitted_addresses(
            "hooks.partner.example", 443, allow_private_networks=False, resolver=mixed
        )
    assert admitted_addresses(
        "hooks.partner.example", 443, allow_private_networks=True, resolver=mixed
    ) == [PUBLIC, ipaddress.ip_address("10.1.2.3")]


def test_the_system_resolver_reads_every_ipv4_form_as_a_connection_would() -> None:
    # Why those forms are refused before any lookup: getaddrinfo takes them all for loopback.
    for host in ("2130706433", "0x7f000001", "0177.0.0.1", "127.1"):
        assert webhook_targets.system_resolver(host, 443) == [LOOPBACK]


def test_allowed_host_patterns_see_through_a_trailing_dot_and_are_checked_before_any_lookup() -> (
    None
):
    asked: list[str] = []

    def public(host: str, port: int) -> Sequence[IPAddress]:
        asked.append(host)
        return [PUBLIC]

    regional = TargetPolicy(allowed_hosts=("*.region.example",), resolver=public)
    inwards = TargetPolicy(allowed_hosts=("*.region.example",), resolver=_answers(LOOPBACK))

    assert regional.check("https://EHR.Region.Example./hook") == "https://EHR.Region.Example./hook"
    with pytest.raises(InvalidWebhookError, match="not among the allowed"):
        regional.check("https://ehr.elsewhere.example./hook")
    with pytest.raises(InvalidWebhookError, match=r"127\.0\.0\.1: loopback"):
        inwards.check("https://ehr.region.example./hook")
    with pytest.raises(InvalidWebhookError, match="private"):
        regional.check("https://127.0.0.1./hook")
    assert asked == ["ehr.region.example"]


def test_a_name_that_does_not_resolve_is_refused_saying_so() -> None:
    def nowhere(host: str, port: int) -> Sequence[IPAddress]:
        raise OSError(-2, "Name or service not known")

    with pytest.raises(InvalidWebhookError, match="does not resolve"):
        TargetPolicy(resolver=nowhere).check("https://ehr.example/events")
    # Allowed private networks leave nothing to find out: nothing is looked up.
    assert TargetPolicy(allow_private_networks=True, resolver=nowhere).check(
        "https://ehr.example/events"
    )


@pytest.mark.parametrize(
    "url", ["https://[::1/events", "https://93.184.215.14:99999/events", "https://exa\u00a0mple/"]
)
def test_a_url_that_could_never_be_sent_is_refused_as_not_valid(url: str) -> None:
    with pytest.raises(InvalidWebhookError, match="not valid"):
        TargetPolicy(allow_private_networks=True).check(url)


class _Recording(httpcore.AsyncNetworkBackend):
    """Stands in for the network: records where connections go, answers 204 on each."""

    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        return httpcore.AsyncMockStream([b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"])


async def test_each_connection_looks_the_name_up_once_and_goes_to_the_address_checked() -> None:
    # The name answers a public address when checked, then rebinds to loopback.
    answers = iter([[PUBLIC], [LOOPBACK]])
    asked: list[str] = []

    def rebinding(host: str, port: int) -> Sequence[IPAddress]:
        asked.append(host)
        return next(answers)

    network = _Recording()
    backend = PinnedBackend(allow_private_networks=False, resolver=rebinding, inner=network)

    first = await backend.connect_tcp("hooks.partner.example", 443)
    with pytest.raises(RefusedTargetError, match=r"127\.0\.0\.1: loopback"):
        await backend.connect_tcp("hooks.partner.example", 443)

    assert first is not None
    assert asked == ["hooks.partner.example", "hooks.partner.example"]
    assert network.connected == [("93.184.215.14", 443)]


async def test_a_name_that_does_not_resolve_at_delivery_is_a_connect_error() -> None:
    def nowhere(host: str, port: int) -> Sequence[IPAddress]:
        raise OSError(-2, "Name or service not known")

    network = _Recording()
    backend = PinnedBackend(allow_private_networks=False, resolver=nowhere, inner=network)

    with pytest.raises(httpcore.ConnectError, match="does not resolve"):
        await backend.connect_tcp("hooks.partner.example", 443)
    assert network.connected == []


@contextmanager
def _tls_receiver(tmp_path: Path, name: str) -> Iterator[tuple[int, ssl.SSLContext, list[str]]]:
    """A real HTTPS server on 127.0.0.1 whose certificate names only ``name``, from a CA made
    for the test; yields its port, a client context trusting that CA, and the Host headers seen.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.now(UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = tmp_path / "receiver.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(chain)
    client_context = ssl.create_default_context(
        cadata=ca.public_bytes(serialization.Encoding.PEM).decode("ascii")
    )
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hosts.append(self.headers.get("Host", ""))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    # Handshakes happen on accept; one that fails is dropped by the server, as it should be.
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], client_context, hosts
    finally:
        server.shutdown()
        server.server_close()


async def test_tls_is_verified_for_the_name_while_the_connection_goes_to_its_checked_address(
    tmp_path: Path,
) -> None:
    with _tls_receiver(tmp_path, "receiver.test") as (port, trusted, hosts):
        resolver = _answers(LOOPBACK)
        async with webhook_client(
            allow_private_networks=True, resolver=resolver, ssl_context=trusted
        ) as client:
            by_name = await client.post(f"https://receiver.test:{port}/events", content=b"{}")
            # The same server by its address: its certificate does not name 127.0.0.1.
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.post(f"https://127.0.0.1:{port}/events", content=b"{}")
        async with webhook_client(
            allow_private_networks=False, resolver=resolver, ssl_context=trusted
        ) as client:
            with pytest.raises(RefusedTargetError, match="loopback"):
                await client.post(f"https://receiver.test:{port}/events", content=b"{}")

    assert by_name.status_code == 204
    assert hosts == [f"receiver.test:{port}"]


def test_the_client_follows_no_redirects_and_takes_nothing_from_the_environment() -> None:
    client = webhook_client(allow_private_networks=False)

    assert not client.follow_redirects
    assert not client.trust_env


async def test_with_private_networks_allowed_a_local_receiver_gets_its_delivery(
    engine: Engine,
) -> None:
    event_id = str(uuid.uuid4())
    with running_receiver(SECRET) as receiver:
        local = TargetPolicy(allow_http=True, allow_private_networks=True)
        webhook = WebhookRegistry(engine, local).register(
            receiver.url, SECRET, owner="ehr", reach=Reach()
        )
        with Session(engine) as session, session.begin():
            enqueue(session, event_id, {"id": event_id}, [webhook.id], datetime.now(UTC))
        async with webhook_client(allow_private_networks=True) as client:
            tried = await DeliveryWorker(Outbox(engine), client).run_once()

        assert tried == 1
        assert receiver.events() == [{"id": event_id}]
    with Session(engine) as session:
        delivery = session.get(Delivery, (event_id, webhook.id))
        assert delivery is not None
        assert delivery.delivered_at is not None


async def test_sixty_four_sends_at_once_keep_their_connections_open() -> None:
    # The delivery worker has up to 64 sends in flight; a pool that kept only 20 idle closed
    # one whenever more were open, and reconnected (a TLS handshake, to a real receiver).
    async with keepalive_server() as server:
        client = webhook_client(allow_private_networks=True)
        for _ in range(3):
            await asyncio.gather(
                *(client.post(f"{server.url}/hook", content=b"{}") for _ in range(64))
            )
        await client.aclose()
    assert server.requests == 192
    assert server.connections <= 64
