"""Embedding roles on the wire: the role names of the engine ("query", "document": streamret/model/document_map.py)
and the EmbeddingRole enum of the API.

Imports only the generated messages, streamret.errors and streamret.embedding_roles, so that the client (which has
no torch) shares it.
"""

from __future__ import annotations

from ..embedding_roles import check_role
from ..errors import InvalidArgument
from .proto_gen import streamret_pb2 as pb

_NUMBER_OF = {"query": pb.EMBEDDING_ROLE_QUERY, "document": pb.EMBEDDING_ROLE_DOCUMENT}
# UNSPECIFIED is the default, query: what every request from before the enum sends
_NAME_OF = {pb.EMBEDDING_ROLE_UNSPECIFIED: "query", pb.EMBEDDING_ROLE_QUERY: "query",
            pb.EMBEDDING_ROLE_DOCUMENT: "document"}


def role_number(role: str) -> int:
    """The EmbeddingRole of a role name; ValueError naming a bad one and the choices (the client's check)."""
    return _NUMBER_OF[check_role(role)]


def role_name(number: int, field: str) -> str:
    """The role name a request's EmbeddingRole asks for; InvalidArgument naming `field` and an unknown value."""
    name = _NAME_OF.get(number)
    if name is None:
        raise InvalidArgument(f"{field} {number} is not an EmbeddingRole; use EMBEDDING_ROLE_QUERY (or leave it "
                              "unset) or EMBEDDING_ROLE_DOCUMENT")
    return name


def served_role(number: int) -> str | None:
    """The role name of a response's EmbeddingRole; None for UNSPECIFIED (a server older than roles: the query
    embedding, whatever was asked) or a value this client does not know."""
    return None if number == pb.EMBEDDING_ROLE_UNSPECIFIED else _NAME_OF.get(number)
