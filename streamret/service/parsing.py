"""Requests whose bytes are not the message they claim to be get INVALID_ARGUMENT, not gRPC's UNKNOWN.

gRPC parses a request before any servicer code runs, and a parse error there ends the call with UNKNOWN
("Unexpected DecodeError"). `register` installs the generated services with parsers that never raise: an
unparsable request becomes an `Undecodable`, which the `rpc` decorator (gate.py) turns into
INVALID_ARGUMENT naming the message type, for unary requests and for each message of a request stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc

from ..errors import InvalidArgument


class Undecodable:
    """A request message that did not parse."""

    def __init__(self, message: str, error: Exception):
        self.message, self.error = message, error

    def invalid(self) -> InvalidArgument:
        return InvalidArgument(f"the request is not a valid {self.message} message ({type(self.error).__name__}: "
                               f"{self.error}); send it as the service's .proto defines it (string fields in UTF-8)")


def checked(request):
    """The request, or for a request stream an iterator over it, that raises InvalidArgument on an Undecodable."""
    if isinstance(request, Undecodable):
        raise request.invalid()
    if hasattr(request, "__aiter__"):
        return _checked_stream(request)
    return request


def valid(message):
    """The message, or InvalidArgument for an Undecodable: for handlers that read their request stream with
    context.read() (the stream that checked() gives is then never iterated)."""
    if isinstance(message, Undecodable):
        raise message.invalid()
    return message


async def _checked_stream(requests) -> AsyncIterator:
    async for request in requests:
        if isinstance(request, Undecodable):
            raise request.invalid()
        yield request


def _tolerant(parse: Callable[[bytes], object], message: str,
              on_message: Callable[[int], None] | None = None) -> Callable[[bytes], object]:
    def tolerant_parse(raw: bytes) -> object:
        if on_message is not None:
            on_message(len(raw))
        try:
            return parse(raw)
        except Exception as e:  # noqa: BLE001  (DecodeError, or a string field with invalid UTF-8)
            return Undecodable(message, e)

    return tolerant_parse


class _Collect:
    """Stands in for the server while a generated add_*_to_server registers its handlers."""

    def __init__(self):
        self.service: str | None = None
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass  # the registered handlers below say the same

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self.service, self.handlers = service, handlers


def register(add_to_server: Callable, servicer, server: grpc.aio.Server,
             on_message: Callable[[int], None] | None = None) -> None:
    """`add_to_server(servicer, server)` of the generated code, with parsers that never raise and that tell
    `on_message` each request message's size in bytes."""
    collect = _Collect()
    add_to_server(servicer, collect)
    handlers = {}
    for name, h in collect.handlers.items():
        owner = getattr(h.request_deserializer, "__self__", None)  # the message class of FromString
        message = owner.DESCRIPTOR.full_name if hasattr(owner, "DESCRIPTOR") else f"{name} request"
        handlers[name] = h._replace(request_deserializer=_tolerant(h.request_deserializer, message, on_message))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(collect.service, handlers),))
    server.add_registered_method_handlers(collect.service, handlers)
