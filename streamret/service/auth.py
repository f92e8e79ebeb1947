"""Who is calling: bearer tokens -> tenants, and each tenant's private stream namespace.

Token file (`streamret serve --auth-tokens FILE`), one token per line, `#` starts a comment:

    # token                            tenant   [access]
    3f9c0d2e8b7a4c1f9e6d5b4a3c2e1f0a   acme               # read and write (the default)
    b71e5f0c9d8a4b3e2f1c0d9e8a7b6c5d   acme     read      # read only
    0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f   globex   write

Clients send `authorization: Bearer <token>` metadata. `read` tokens may open existing streams, read
embeddings and summaries, export states and embed tables; appending, creating, closing, forking and
importing need `write` (PERMISSION_DENIED otherwise). Without a token file every caller is the tenant
`default` with write access (and the server binds to loopback only, unless told otherwise).

The engine sees `"<tenant>\\x1f<stream id>"`: ids may not contain control characters, so no tenant can
name a stream inside another tenant's namespace, and the service never lists streams across tenants.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgument, PermissionDenied, Unauthenticated

MAX_ID_CHARS = 256
DEFAULT_TENANT = "default"
_SEP = "\x1f"  # ASCII unit separator: a control character, so never part of a valid id


def check_name(value: str, what: str = "stream_id") -> str:
    """Return `value` if it is a valid stream id or tenant name, else raise InvalidArgument."""
    if not value:
        raise InvalidArgument(f"{what} is empty; give 1..{MAX_ID_CHARS} characters")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"{what} has {len(value)} characters; the limit is {MAX_ID_CHARS}")
    if value.isprintable():  # the usual id, checked in C: no printable character is Cc or Cs
        return value
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise InvalidArgument(f"{what} {value!r} contains control character U+{ord(bad):04X}; remove it")
    return value


@dataclass(frozen=True)
class Caller:
    tenant: str
    can_write: bool = True

    def engine_id(self, stream_id: str, what: str = "stream_id") -> str:
        """The engine's id for this tenant's stream (validates the client's id first)."""
        return f"{self.tenant}{_SEP}{check_name(stream_id, what)}"

    def require_write(self, action: str) -> None:
        if not self.can_write:
            raise PermissionDenied(f"this token is read-only; {action} needs a token with write access")


def client_id(engine_id: str) -> str:
    """The client's stream id inside an engine id (the inverse of Caller.engine_id)."""
    return engine_id.split(_SEP, 1)[1]


def tenant_of(engine_id: str) -> str | None:
    """The tenant part of an engine id, or None for ids the service did not make (e.g. batch temporaries)."""
    return engine_id.split(_SEP, 1)[0] if _SEP in engine_id else None


def scrub(message: str, tenant: str) -> str:
    """Rewrite the tenant's engine ids inside an engine error message into the client's own ids."""
    prefix = f"{tenant}{_SEP}"
    for form in (repr(prefix)[1:-1], prefix):
        message = message.replace(form, "")
    return message


def _digest(token: str) -> bytes:
    # Look tokens up by digest so the table does not keep them in plain text and lookups do not
    # compare secret prefixes.
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    """Maps the `authorization` metadata of a call to a Caller."""

    def __init__(self, tokens: dict[str, Caller] | None = None):
        self._by_digest = None if tokens is None else {_digest(t): c for t, c in tokens.items()}

    @property
    def enabled(self) -> bool:
        return self._by_digest is not None

    @classmethod
    def from_file(cls, path: str | Path) -> Authenticator:
        path = Path(path)
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise ValueError(f"cannot read auth token file {path}: {e.strerror}") from None
        tokens: dict[str, Caller] = {}
        for n, line in enumerate(lines, 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] not in ("read", "write")):
                raise ValueError(f"{path}:{n}: expected 'TOKEN TENANT [read|write]', got {len(fields)} fields")
            token, tenant = fields[0], fields[1]
            try:
                check_name(tenant, "tenant")
            except InvalidArgument as e:
                raise ValueError(f"{path}:{n}: {e}") from None
            if token in tokens:
                raise ValueError(f"{path}:{n}: this token already appears on an earlier line; tokens must be unique")
            tokens[token] = Caller(tenant, can_write=len(fields) == 2 or fields[2] == "write")
        if not tokens:
            raise ValueError(f"auth token file {path} holds no tokens; expected lines 'TOKEN TENANT [read|write]'")
        return cls(tokens)

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        if self._by_digest is None:
            return Caller(DEFAULT_TENANT)
        header = next((v for k, v in (metadata or ()) if k == "authorization"), None)
        if header is None:
            raise Unauthenticated("missing 'authorization' metadata; send 'authorization: Bearer <token>'")
        if isinstance(header, bytes):
            header = header.decode("utf-8", "replace")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("malformed 'authorization' metadata; send 'authorization: Bearer <token>'")
        caller = self._by_digest.get(_digest(token.strip()))
        if caller is None:
            raise Unauthenticated("unknown bearer token")
        return caller
