"""The one place where exceptions become gRPC statuses.

Errors from `streamret.errors` carry the status a client should see and a message safe to show it.
Anything else is a bug on our side: the client gets INTERNAL with an incident id, the log gets the
traceback under the same id. A client never sees a traceback.
"""

from __future__ import annotations

import logging
import uuid

import grpc

from ..errors import StreamRetError

log = logging.getLogger("streamret.service")


def status_of(exc: BaseException, *, method: str = "") -> tuple[grpc.StatusCode, str]:
    """(status code, client-safe message) for an exception raised while serving `method`."""
    if isinstance(exc, StreamRetError):
        code = getattr(grpc.StatusCode, exc.code, None)
        if code is not None and code is not grpc.StatusCode.OK:
            return code, str(exc)
    incident = uuid.uuid4().hex[:12]
    log.error("internal error in %s (incident %s)", method or "a call", incident, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); the server log has the details"


def code_number(code: grpc.StatusCode) -> int:
    """The wire number of a status code (what AppendResponse.error_code carries)."""
    return code.value[0]
