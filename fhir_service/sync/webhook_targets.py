"""Which addresses webhook deliveries may reach, and the HTTP client that reaches no others.

A webhook URL is a stranger's: taken as it comes, it aims the service at its own neighbours
(loopback, the cloud metadata address, the private network). A host name says nothing about
where it leads, and IPv4 has many spellings (``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and
``127.1`` are all ``127.0.0.1`` to ``getaddrinfo``), so the host is resolved and every address it
resolves to is checked: when the webhook is registered (``TargetPolicy`` in
:mod:`fhir_service.sync.webhook_registrations`) and again for every connection a delivery opens
(:class:`PinnedBackend`). The connection then goes to an address that was just checked, never to
a second lookup of the name, so a name that resolves elsewhere by then (DNS rebinding) gains
nothing; TLS still verifies the certificate for the name in the URL.

IPv4 written in any form but dotted decimal is refused outright rather than resolved: resolvers
read those forms differently (``0177`` is octal to ``inet_aton``, decimal to others), httpx
refuses some of them, and no receiver needs them.

Errors::

    RefusedTargetError (ValueError)   the host is not one the service may call; says why
    OSError / UnicodeError            from the resolver: the name does not resolve
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence

import httpcore
import httpx

__all__ = [
    "IPAddress",
    "PinnedBackend",
    "RefusedTargetError",
    "Resolver",
    "admitted_addresses",
    "canonical_host",
    "system_resolver",
    "webhook_client",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses a connection to them may use; OSError if the name does not resolve.
Resolver = Callable[[str, int], Sequence[IPAddress]]

# The last label of an IPv4 address in any spelling: decimal, octal (leading 0) or hex (0x).
# A host ending in one is an address to the WHATWG URL standard, whatever else it says.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class RefusedTargetError(ValueError):
    """The target's host is not one the service may call; the message says why."""


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses ``getaddrinfo`` gives for ``host``: what a plain connection would use."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0])) for info in infos))


def canonical_host(host: str) -> str:
    """``host`` as the policy compares it: lower case, without an absolute name's final dot.

    :class:`RefusedTargetError` if it looks like an IPv4 address (its last label is a number)
    but is not one in dotted decimal.

    >>> canonical_host("Hooks.Region.Example.")
    'hooks.region.example'
    >>> canonical_host("93.184.215.14.")
    '93.184.215.14'
    >>> canonical_host("0177.0.0.1")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    RefusedTargetError: host '0177.0.0.1' is not an IPv4 address in dotted-decimal form; ...
    """
    name = host.lower().removesuffix(".")
    if ":" not in name and _NUMERIC_LABEL.fullmatch(name.rpartition(".")[2]):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise RefusedTargetError(
                f"host {host!r} is not an IPv4 address in dotted-decimal form; write the address"
                " as four decimal numbers, such as 192.0.2.10"
            ) from None
    return name


def admitted_addresses(
    host: str,
    port: int,
    *,
    allow_private_networks: bool,
    resolver: Resolver = system_resolver,
) -> list[IPAddress]:
    """Every address ``host`` resolves to, once each of them is one the service may call.

    An IP address is its own (no lookup). :class:`RefusedTargetError` if any address is not
    public (loopback, private, link-local, shared, reserved, multicast, unspecified, or such an
    IPv4 address inside IPv6), unless ``allow_private_networks``; the resolver's ``OSError`` if
    the name does not resolve. Blocks on DNS.
    """
    name = canonical_host(host)
    literal = _literal(name)
    if literal is not None:
        addresses: Sequence[IPAddress] = [literal]
        where = "is"
    elif not allow_private_networks and (name == "localhost" or name.endswith(".localhost")):
        # RFC 6761: these names are loopback whatever a resolver answers.
        raise RefusedTargetError(f"host {host!r} is a local or private address")
    else:
        addresses = resolver(name, port)
        where = "resolves to"
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{name} has no address")
    if not allow_private_networks:
        for address in addresses:
            kind = _not_public(address)
            if kind is not None:
                raise RefusedTargetError(
                    f"host {host!r} {where} a local or private address ({address}: {kind})"
                )
    return list(addresses)


def _literal(name: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _not_public(address: IPAddress) -> str | None:
    """What keeps ``address`` from being public, or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        translated = address.ipv4_mapped or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        )
        if translated is not None:
            # A mapped or NAT64 address reaches the IPv4 address inside it, and only that.
            kind = _not_public(translated)
            return None if kind is None else f"{kind}, {translated} inside IPv6"
        for inner in (address.sixtofour, *(address.teredo or ())):
            kind = None if inner is None else _not_public(inner)
            if kind is not None:
                return f"{kind}, {inner} inside a 6to4 or Teredo address"
        if address.is_site_local:
            return "site-local"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared address space", address in _SHARED),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally reachable", not address.is_global),
    )
    return next((kind for kind, found in checks if found), None)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens connections only to admitted addresses, and to exactly the addresses it checked.

    Each ``connect_tcp`` resolves the host once, checks every address and connects to one of
    them by its IP; httpcore starts TLS afterwards with the URL's host as ``server_hostname``,
    so the certificate is verified for the name. A refused host raises
    :class:`RefusedTargetError` before any connection is opened.
    """

    def __init__(
        self,
        *,
        allow_private_networks: bool,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private_networks = allow_private_networks
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the first of ``host``'s checked addresses that answers."""
        lookup = asyncio.to_thread(
            admitted_addresses,
            host,
            port,
            allow_private_networks=self.allow_private_networks,
            resolver=self.resolver,
        )
        try:
            addresses = await asyncio.wait_for(lookup, timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"looking up {host!r} took too long") from exc
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host!r} does not resolve: {exc}") from exc
        *others, last = addresses
        for address in others:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue
        return await self.inner.connect_tcp(str(last), port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        """Pause between connection retries, as the inner backend does."""
        await self.inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, over a connection pool that :class:`PinnedBackend` connects."""

    def __init__(self, backend: PinnedBackend, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context)
        # httpx 0.28 takes no network backend (encode/httpx#3749 would add one), so the pool it
        # just made is replaced by the same pool over ours. tests/faults/test_ssrf.py fails if a
        # later httpx stops sending through ``_pool``.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=100,
            # As many as may be open: httpcore closes idle connections while the pool holds
            # more than this in all, and the delivery worker sends 64 at once.
            max_keepalive_connections=100,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


def webhook_client(
    *,
    allow_private_networks: bool,
    resolver: Resolver = system_resolver,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncClient:
    """The client deliveries are sent with: pinned, checked connections; no redirects followed;
    no proxy or ``.netrc`` credentials taken from the environment.

    ``ssl_context`` defaults to httpx's (certifi's CAs, or ``SSL_CERT_FILE``'s when it is set).
    """
    backend = PinnedBackend(allow_private_networks=allow_private_networks, resolver=resolver)
    transport = _PinnedTransport(backend, ssl_context or httpx.create_ssl_context())
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)
