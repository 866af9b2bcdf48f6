"""The service's door: who may ask, how much they may send, and what the browser may do.

- `Tokens`: bearer tokens (from `PNEUMONIA_API_TOKEN`, comma-separated, and/or a token file,
  one a line), compared in constant time; a token is never logged, only its `token_id` (the
  first 12 hex of its sha256).
- `Guarded`, one ASGI middleware in front of the app:
  - answers 401 to every request without a valid `Authorization: Bearer` header, except the
    public routes (`PUBLIC`: a minimal `/health`, the static page and its script);
  - refuses a request whose `Host` is not allowed (DNS rebinding) and a cross-site request
    whose `Origin` is not one of the allowed hosts (a form posted by another web page);
  - refuses a body whose declared `Content-Length` is over the cap, before reading any of it,
    and stops reading one that grows past the cap (chunked uploads), both 413; a body whose
    next piece does not arrive within `body_timeout` seconds gets 408;
  - adds the security headers (`SECURITY_HEADERS`) to every answer.
- `HeaderDeadline`: uvicorn's HTTP/1.1 protocol, closing a connection whose request line and
  headers have not all arrived within a deadline (idle and slow clients, slowloris).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pneumonia.core.errors import PneumoniaError
from pneumonia.core.secret_files import read_secret_file

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_ENV = "PNEUMONIA_API_TOKEN"
PUBLIC = frozenset(
    (method, path)
    for method in ("GET", "HEAD")
    for path in ("/health", "/", "/static/app.js", "/static/app.css")
)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def token_id(token: str) -> str:
    """How logs name a token: the first 12 hex of its sha256 (the token itself never)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Tokens:
    """The tokens that may call the service (none: anonymous, when allowed)."""

    values: tuple[str, ...] = ()

    @classmethod
    def load(cls, token_file: Path | None = None, env: str | None = None) -> Tokens:
        """Tokens from `env` (default: $PNEUMONIA_API_TOKEN, comma-separated) and `token_file`
        (one a line; blank lines and `#` comments skipped). A token under 16 characters is
        refused, naming where it came from but never the token."""
        found: list[tuple[str, str]] = []
        raw = os.environ.get(TOKEN_ENV, "") if env is None else env
        found += [(TOKEN_ENV, t.strip()) for t in raw.split(",") if t.strip()]
        if token_file is not None:
            lines = read_secret_file(token_file, "token file").splitlines()
            found += [
                (str(token_file), s.strip()) for s in lines if s.strip() and not s.startswith("#")
            ]
        for where, token in found:
            if len(token) < 16:
                raise PneumoniaError(
                    f"{where}: a token of {len(token)} characters; use at least 16 random "
                    "ones (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                )
        return cls(tuple(dict.fromkeys(t for _, t in found)))

    def match(self, header: str | None) -> str | None:
        """The token id of a valid `Bearer` header, else None. Every token is compared, each in
        constant time, whatever matched first."""
        if not header or header[:7].lower() != "bearer ":
            return None
        offered = header[7:].strip().encode()
        found = None
        for token in self.values:
            if hmac.compare_digest(offered, token.encode()):
                found = token_id(token)
        return found


def is_loopback(host: str) -> bool:
    """True for an address or name that only this machine reaches."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, tokens: Tokens, allow_anonymous: bool) -> None:
    """Refuse to serve on an address other machines reach without a token, unless asked."""
    if tokens.values or allow_anonymous or is_loopback(host):
        return
    raise PneumoniaError(
        f"--host {host} is reachable from other machines and no token is set: set "
        f"{TOKEN_ENV} or pass --token-file FILE (or --allow-anonymous, behind a proxy that "
        "authenticates)"
    )


@dataclass
class Door:
    """What `Guarded` enforces."""

    tokens: Tokens = field(default_factory=Tokens)
    anonymous: bool = False  # no token needed (loopback, or --allow-anonymous)
    allowed_hosts: tuple[str, ...] | None = None  # None: any Host header
    max_body_bytes: int = 64 * 1024 * 1024
    body_timeout: float = 30.0


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):
        return value.split("]")[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guarded:
    """The ASGI middleware of the module's doc."""

    def __init__(self, app: ASGIApp, door: Door) -> None:
        self.app, self.door = app, door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = self.door.tokens.match(headers.get("authorization"))
        refusal = self._refusal(scope, headers, token)
        if refusal is not None:
            await _json(send, *refusal)
            return
        scope.setdefault("state", {})["token_id"] = token
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.door.max_body_bytes):
            await _json(send, 413, self._too_large(length))
            return
        stop: list[BodyProblem] = []
        await self.app(scope, self._capped(receive, stop), _answering(send, stop))

    def _refusal(
        self, scope: Scope, headers: dict[str, str], token: str | None
    ) -> tuple[int, str, dict[str, str]] | None:
        allowed = self.door.allowed_hosts
        host = _host_name(headers.get("host", ""))
        if allowed is not None and host not in allowed:
            return 400, f"Host {host!r} is not served here (--allowed-host)", {}
        origin = headers.get("origin")
        if origin == "null":
            return 403, "cross-site request refused (Origin null)", {}
        if origin is not None:
            origin_host = _host_name(origin.split("://", 1)[-1].split("/", 1)[0])
            if origin_host != host and (allowed is None or origin_host not in allowed):
                return 403, "cross-site request refused (Origin is not this service)", {}
        public = (scope["method"], scope["path"]) in PUBLIC
        if public or self.door.anonymous or token is not None:
            return None
        why = "missing" if "authorization" not in headers else "invalid"
        challenge = {"www-authenticate": "Bearer"}
        return 401, f"{why} token: send Authorization: Bearer <token>", challenge

    def _too_large(self, length: str) -> str:
        return f"request body of {length} bytes is over the {self.door.max_body_bytes:,}-byte limit"

    def _capped(self, receive: Receive, stop: list[BodyProblem]) -> Receive:
        """`receive`, ending a body that grows past the cap or stalls past the timeout: the
        app is told the client left, and `_answering` sends the refusal instead of its answer."""
        seen = 0
        door = self.door

        async def capped() -> Message:
            nonlocal seen
            if stop:
                return {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), door.body_timeout)
            except TimeoutError:
                stop.append(BodyProblem(408, f"no part of the body for {door.body_timeout:g} s"))
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > door.max_body_bytes:
                    limit = f"{door.max_body_bytes:,}-byte limit"
                    stop.append(BodyProblem(413, f"request body over the {limit}"))
                    return {"type": "http.disconnect"}
            return message

        return capped


def _answering(send: Send, stop: list[BodyProblem]) -> Send:
    """`send`, but once the body was stopped the refusal goes out instead of the app's answer."""
    done = False

    async def answering(message: Message) -> None:
        nonlocal done
        if not stop:
            await send(message)
        elif not done:
            done = True
            await _json(send, stop[0].status, stop[0].reason)

    return answering


@dataclass(frozen=True)
class BodyProblem:
    """A request body refused while it was being read (too large, or stalled): the answer."""

    status: int
    reason: str


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return sending


async def _json(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def allowed_hosts(host: str, extra: Iterable[str]) -> tuple[str, ...] | None:
    """The Host headers a service on `host` answers: `extra` when given; on loopback, the
    loopback names (a DNS-rebinding page names another host); else any."""
    names = tuple(_host_name(h) for h in extra)
    if names:
        return names
    return LOOPBACK_NAMES if is_loopback(host) else None


def header_deadline_protocol(seconds: float) -> type:
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request line and headers have
    not all arrived `seconds` after it opened or after its last answer (uvicorn's own
    keep-alive timer stops at the first byte, so a client sending one byte a minute, or
    nothing after connecting, would hold the connection forever)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before:  # a new request's line and headers are complete
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request's headers get the same deadline

    return HeaderDeadline
