"""Embedding roles at the engine's boundary: the role checked before any wait, applied to plain embeddings.

Every engine (in this process, in engine processes, over a cluster) holds its model's `Roles`
(streamret/model/document_map.py) and applies them on the caller's side, so the engine processes and
workers only ever compute plain embeddings.
"""

from __future__ import annotations

import numpy as np

from ..errors import FailedPrecondition, InvalidArgument
from ..model.document_map import Roles


class ServesRoles:
    """check_role and as_role over `self.roles`, with the errors a client is shown."""

    roles: Roles

    def check_role(self, role: str) -> None:
        """InvalidArgument for an unknown embedding role; FailedPrecondition for "document" where the model has no
        document map (the message says how to build one)."""
        try:
            self.roles.check(role)
        except LookupError as e:
            raise FailedPrecondition(str(e)) from None
        except ValueError as e:
            raise InvalidArgument(str(e)) from None

    def as_role(self, embeddings: np.ndarray, role: str) -> np.ndarray:
        """Plain embeddings ([embed_dim] or [n, embed_dim]) as `role` has them (checked as check_role)."""
        self.check_role(role)
        return self.roles.as_role(embeddings, role)
