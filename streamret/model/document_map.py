"""Embedding roles, and the document map that the `document` role applies (issue 18).

A stream's embedding is the mean of its hidden states. The means of long texts all lean along the same few
directions (the longer the text, the more), so in a search of long documents those shared directions
outweigh what tells one document from another. The document map takes them down with a fixed linear map,
fitted once per model on the embeddings of training windows (never on evaluation text):

    document(d) = normalise((d - mu) @ C^-power)

mu and C the mean and covariance of the training windows' embeddings, C first shrunk toward its mean variance
(`shrink`: (1 - shrink) C + shrink tr(C)/dim I) so that directions seen little are not blown up. Only the
documents of an index are mapped: a search compares a query's plain embedding (role `query`) with the
documents' mapped ones (role `document`), and the score q.(d - mu) C^-power ranks them.

Roles (their names: streamret/embedding_roles.py):
    query      the embedding as the model computes it: queries, passages, events, any stream (the default)
    document   the document map applied: a whole document to be found by queries

The map is built by `python -m streamret.train.document_map` for one set of weights, and ships beside them
as document_map.safetensors; a map whose fingerprint is not the weights' is not used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..embedding_roles import ROLES, check_role

MAP_FILE = "document_map.safetensors"


def whitening(train: torch.Tensor, power: float, shrink: float) -> torch.Tensor:
    """C^-power (float32 [d, d]) for C the covariance of the rows of `train`, shrunk toward its mean variance by
    `shrink`; computed in float64."""
    if not 0.0 <= shrink <= 1.0:
        raise ValueError(f"shrink={shrink}; use a number in [0, 1] (0: the covariance as it is, 1: only centre)")
    x = train.double() - train.double().mean(0)
    cov = x.T @ x / max(1, len(x) - 1)
    cov = (1 - shrink) * cov + shrink * cov.trace() / len(cov) * torch.eye(len(cov), dtype=cov.dtype)
    evals, evecs = torch.linalg.eigh(cov)
    return ((evecs * evals.clamp_min(1e-12) ** -power) @ evecs.T).float()


@dataclass(frozen=True)
class DocumentMap:
    """normalise((d - mean) @ matrix) for embeddings d, fitted for the weights named by `fingerprint`."""

    mean: np.ndarray  # [dim] float32
    matrix: np.ndarray  # [dim, dim] float32, symmetric
    fingerprint: str  # model_fingerprint of the weights whose embeddings it was fitted on
    power: float
    shrink: float
    windows: int  # training windows fitted on

    def __post_init__(self):  # the float64 copy every call multiplies by, made once rather than per request
        object.__setattr__(self, "_matrix64", np.asarray(self.matrix, np.float64))

    @classmethod
    def fit(cls, train: torch.Tensor | np.ndarray, fingerprint: str, power: float = 1.0,
            shrink: float = 0.1) -> DocumentMap:
        """The map from the embeddings of training windows, train [windows, dim]."""
        t = torch.as_tensor(np.asarray(train, np.float32))
        if t.dim() != 2 or len(t) < 2 or (shrink == 0 and len(t) <= t.shape[1]):
            raise ValueError(f"fitting a document map takes [windows, dim] embeddings of at least 2 windows (more "
                             f"than dim without shrinkage), got {tuple(t.shape)}; embed more windows")
        return cls(t.double().mean(0).float().numpy(), whitening(t, power, shrink).numpy(), fingerprint,
                   float(power), float(shrink), len(t))

    @property
    def dim(self) -> int:
        return len(self.mean)

    def __call__(self, embeddings: np.ndarray) -> np.ndarray:
        """The mapped embeddings, L2-normalised, float32, in the shape given ([dim] or [n, dim])."""
        e = np.asarray(embeddings, np.float32)
        if e.shape[-1] != self.dim:
            raise ValueError(f"embeddings of dim {e.shape[-1]}; this document map is for dim {self.dim}")
        out = (e.astype(np.float64) - self.mean) @ self._matrix64
        norm = np.linalg.norm(out, axis=-1, keepdims=True)
        return (out / np.maximum(norm, 1e-12)).astype(np.float32)

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(folder) / MAP_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"fingerprint": self.fingerprint, "power": str(self.power), "shrink": str(self.shrink),
                "windows": str(self.windows)}
        tmp = path.with_name(path.name + ".tmp")
        save_file({"mean": torch.from_numpy(self.mean), "matrix": torch.from_numpy(self.matrix)}, str(tmp), meta)
        tmp.chmod(0o644)  # an asset every user of an installed package reads (the writer may make it 0600)
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> DocumentMap:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            mean, matrix = f.get_tensor("mean").float().numpy(), f.get_tensor("matrix").float().numpy()
        if matrix.shape != (len(mean), len(mean)) or "fingerprint" not in meta:
            raise ValueError(f"{path} is not a document map (mean {tuple(mean.shape)}, matrix "
                             f"{tuple(matrix.shape)}, metadata {json.dumps(meta)}); rebuild it with "
                             "python -m streamret.train.document_map")
        return cls(mean, matrix, meta["fingerprint"], float(meta.get("power", "nan")),
                   float(meta.get("shrink", "nan")), int(meta.get("windows", "0")))


def find_document_map(folder: str | Path | None, fingerprint: str, embed_dim: int) -> tuple[DocumentMap | None, str]:
    """(the map in `folder` fitted for these weights, "") or (None, why there is none, as a sentence)."""
    if folder is None:
        return None, "this model has no folder to hold a document map (random weights)"
    path = Path(folder) / MAP_FILE
    if not path.is_file():
        return None, f"its folder {folder} has no {MAP_FILE}"
    try:
        found = DocumentMap.read(path)
    except Exception as e:  # a damaged file disables the role, with the reason, rather than the model
        return None, f"{path} could not be read ({e})"
    if found.fingerprint != fingerprint:
        return None, (f"{path} was fitted for the weights {found.fingerprint[:16]}, not these "
                      f"({fingerprint[:16]})")
    if found.dim != embed_dim:
        return None, f"{path} is for embeddings of dim {found.dim}, the model's are {embed_dim}"
    return found, ""


class Roles:
    """A model's embedding roles: `as_role` returns embeddings as the role asks, or says why it cannot."""

    def __init__(self, document_map: DocumentMap | None, missing: str = "", model: str = "the model",
                 folder: str | Path | None = None):
        """missing: why there is no map (a sentence); folder: where a map for this model would go (None: nowhere,
        as for random weights)."""
        self.document_map, self.missing, self.model, self.folder = document_map, missing, model, folder

    @property
    def available(self) -> tuple[str, ...]:
        return ROLES if self.document_map is not None else ("query",)

    def check(self, role: str) -> str:
        """`role`, if this model serves it: ValueError for an unknown role, LookupError for "document" where the
        model has no document map (the message says why and how to build one)."""
        if check_role(role) == "document" and self.document_map is None:
            fix = (f"build it with python -m streamret.train.document_map --model {self.model}" if self.folder
                   else "load a checkpoint folder that has one")
            raise LookupError(f"role 'document' needs the model's document map, and {self.model} has none "
                              f"({self.missing}); {fix}, or ask for role 'query'")
        return role

    def as_role(self, embeddings: np.ndarray, role: str = "query") -> np.ndarray:
        """`embeddings` ([dim] or [n, dim]) as `role` has them; raises as `check`."""
        if self.check(role) == "query":
            return embeddings
        return self.document_map(embeddings)
