"""The embedding roles' names and their check, in one place for the model, the service, the client and the CLI
(nothing here imports torch: the client and `--help` stay light). What each role is: streamret/model/document_map.py.

    query      the embedding as the model computes it: queries, passages, events, any stream (the default)
    document   the model's document map applied: a whole document to be found by queries
"""

from __future__ import annotations

ROLES = ("query", "document")


def check_role(role: str) -> str:
    """`role` if it is one of ROLES, else ValueError naming it and the choices."""
    if not isinstance(role, str) or role not in ROLES:
        raise ValueError(f"role={role!r}; use 'query' (the plain embedding: queries, passages, any stream; the "
                         f"default) or 'document' (the model's document map applied: whole documents for an index)")
    return role
