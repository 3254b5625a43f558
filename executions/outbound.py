"""POST a body to a URL given by a caller, without letting the caller aim it at our own network.

The bottom floor of webhooks (services/webhooks.py): knows no database and no settings. The
target's name is resolved once; every address it resolves to is checked (loopback, private,
link-local, shared, reserved, multicast and cloud-metadata addresses are refused unless
`allow_private`, metadata always); the connection then goes to an address that was checked, with
the Host header and the TLS server name (and certificate check) of the name. So a name that
answers differently the next time it is asked (DNS rebinding) cannot slip through: it is not asked
again. Redirects are not followed (a 3xx is a failed attempt).

`post()` never raises for anything the target or the network does; it returns a `Sent`.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port → the addresses it resolves to (the system's resolver, or a test's)
Resolver = Callable[[str, int], list[str]]
# address, port, seconds → a connected socket (the system's TCP connect, or a test's)
Connector = Callable[[str, int, float], socket.socket]

# Instance metadata services (AWS, GCP, Azure, OpenStack, ECS, Alibaba): refused whatever is allowed.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_ANSWER_BYTES = 4096  # of the receiver's answer: only its status matters


class Refused(Exception):
    """The target's address may not be sent to (the message says which and why)."""


@dataclass(frozen=True)
class Sent:
    status_code: int | None  # the receiver's answer; None when there was none
    error: str  # "" for a 2xx; else what went wrong, in a sentence
    refused: bool = False  # the target's address was refused: trying again will not help
    address: str | None = None  # where the request went

    @property
    def ok(self) -> bool:
        return not self.error


def literal_address(host: str) -> Address | None:
    """The address a URL's host spells, in any form a resolver accepts (127.1, 0x7f000001,
    2130706433, [::1]); None for a name."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:  # the BSD forms inet_aton accepts (and so does getaddrinfo)
            return ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def refusal(address: Address, *, allow_private: bool) -> str | None:
    """Why this address may not be a webhook's target, or None if it may."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        reason = refusal(embedded, allow_private=allow_private)
        return f"{reason} ({embedded} embedded)" if reason else None
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if allow_private or address.is_global:
        return None
    for kind, test in (
        ("a loopback address", address.is_loopback),
        ("a link-local address", address.is_link_local),
        ("a private address", address.is_private),
        ("a reserved address", address.is_reserved),
    ):
        if test:
            return kind
    return "not a public address"


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), which is where it goes."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def system_resolver(host: str, port: int, *, timeout: float = 10.0) -> list[str]:
    """getaddrinfo, bounded by `timeout` (it has no timeout of its own): OSError when it fails."""
    answer: list[str] = []
    failure: list[BaseException] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            answer.extend(dict.fromkeys(str(info[4][0]) for info in infos))
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=lookup, daemon=True, name="webhook-dns")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise OSError(f"no answer from DNS for {host} within {timeout:g} s")
    if failure:
        raise failure[0]
    return answer


def tcp_connect(address: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((address, port), timeout=timeout)


def checked_addresses(host: str, port: int, *, resolver: Resolver, allow_private: bool) -> list[str]:
    """Every address `host` resolves to, once; Refused if any of them is refused (a name that
    also points inside is not trusted for its outside answers)."""
    literal = literal_address(host)
    addresses = [str(literal)] if literal is not None else resolver(host, port)
    if not addresses:
        raise OSError(f"{host} resolves to no address")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%")[0])
        reason = refusal(address, allow_private=allow_private)
        if reason:
            shown = host if literal is not None else f"{host} ({address})"
            raise Refused(f"Refused target {shown}: {reason}")
    return addresses


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to one checked address, naming the host it was asked for (Host
    header, TLS server name and certificate check)."""

    def __init__(
        self, host: str, port: int, *, address: str, connector: Connector, timeout: float, tls: ssl.SSLContext | None
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address
        self._connector = connector
        self._tls = tls

    def connect(self) -> None:
        sock = self._connector(self._address, self.port, self.timeout)  # type: ignore[arg-type]
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout: float,
    allow_private: bool,
    resolver: Resolver | None = None,
    connector: Connector = tcp_connect,
    tls: ssl.SSLContext | None = None,
) -> Sent:
    """POST `body` to `url`; everything (DNS, connect, TLS, send, the answer's status line and
    headers) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https"
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError:
        return Sent(None, "The URL's port is invalid", refused=True)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        addresses = checked_addresses(
            host,
            port,
            resolver=resolver or (lambda h, p: system_resolver(h, p, timeout=timeout)),
            allow_private=allow_private,
        )
    except Refused as exc:
        return Sent(None, str(exc), refused=True)
    except (OSError, UnicodeError) as exc:
        return Sent(None, f"Could not resolve {host}: {_reason(exc)}")
    context = (tls or ssl.create_default_context()) if secure else None
    error = ""
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        connection = _PinnedConnection(host, port, address=address, connector=connector, timeout=remaining, tls=context)
        try:
            return _exchange(connection, path, body, headers, deadline, address)
        except ConnectionRefusedError as exc:  # another address of the name may answer
            error = f"Could not connect to {address}: {_reason(exc)}"
        except TimeoutError:
            return Sent(None, f"No answer within {timeout:g} s", address=address)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return Sent(None, f"{type(exc).__name__}: {_reason(exc)}", address=address)
        finally:
            connection.close()
    return Sent(None, error or f"No answer within {timeout:g} s")


def _exchange(
    connection: _PinnedConnection, path: str, body: bytes, headers: dict[str, str], deadline: float, address: str
) -> Sent:
    # A receiver that trickles its answer a byte at a time never hits the socket's timeout: the
    # watchdog cuts the connection at the deadline, whatever it is doing, and whatever was read
    # by then (even a status line) counts for nothing.
    cut = threading.Event()
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, args=(connection, cut))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_ANSWER_BYTES)
    except (OSError, http.client.HTTPException):
        if cut.is_set():
            raise TimeoutError from None
        raise
    finally:
        watchdog.cancel()
    if cut.is_set():
        raise TimeoutError
    status = response.status
    if 200 <= status < 300:
        return Sent(status, "", address=address)
    return Sent(status, f"HTTP {status} {response.reason}".strip(), address=address)


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    cut.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
