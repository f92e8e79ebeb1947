"""A stream's durable record: safetensors tensors plus JSON metadata in the safetensors header.

No pickle: the bytes are parsed by safetensors (tensors) and json (metadata) only, and every shape is
checked against the model before the state is used. The same bytes are what `export_state`
returns and `import_state` takes.

    state.layer.{i}            [1, H, K, V] float32   retention state of layer i
    state.positions            [1] int64              next token's absolute position
    state.pool_sum/pool_count  [1, d] float64, [1]    pooling sums of the stream embedding
    segments.open_sum          [d] float64            the open segment's pooling sum
    segments.kept_embeddings   [M, e] float32         kept segments (absent when M = 0)
    __metadata__["streamret"]  JSON: format, stream_id, model_fingerprint, applied_seq, tokens,
                               revision, text tail (base64) and its byte offset, segment texts,
                               checksum (sha256 of the rest of the metadata and of every tensor)
"""

from __future__ import annotations

import base64
import hashlib
import json

import safetensors.torch
import torch

from ..errors import DamagedRecord, InvalidArgument, ModelMismatch
from ..model.retnet import RetNetConfig, RetNetState
from .config import EngineConfig
from .kept_pool import KeptPool
from .segments import SegmentTracker
from .stream import Stream
from .text import TextSnapshot

FORMAT = "streamret.stream.v2"  # v2: a checksum over the whole record
# records written before v2 (the same fields, no checksum) are still read, so that a state dir survives an
# upgrade; they are checked field by field like any record, and rewritten as v2 at their next write
FORMAT_V1 = "streamret.stream.v1"
_META_KEY = "streamret"


def checksum(meta: dict, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the metadata (but its checksum) and every tensor's name, dtype, shape and bytes: a byte
    changed anywhere in a record, the stream id inside it included, changes it."""
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.numpy())
    return h.hexdigest()


def encode(meta: dict, tensors: dict[str, torch.Tensor]) -> bytes:
    """Record bytes, with the checksum of `meta` and `tensors` written into the metadata."""
    meta = {**meta, "checksum": checksum(meta, tensors)}
    return safetensors.torch.save(
        {k: v.contiguous() for k, v in tensors.items()}, metadata={_META_KEY: json.dumps(meta)}
    )


def decode(data: bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    """Bytes -> (metadata, tensors); InvalidArgument when they are not a streamret record."""
    try:
        n = int.from_bytes(data[:8], "little")
        if len(data) < 8 + n:
            raise ValueError("truncated header")
        header = json.loads(data[8 : 8 + n])
        meta = json.loads(header["__metadata__"][_META_KEY])
        tensors = safetensors.torch.load(bytes(data))
    except Exception as e:  # any parse failure means the bytes are not ours
        raise InvalidArgument(f"not a streamret state record ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, FORMAT_V1):
        raise InvalidArgument(f"state record format {meta.get('format')!r} is not {FORMAT!r} (or {FORMAT_V1!r})")
    return meta, tensors


# Counts, seqs, revisions and byte offsets. A record from a client (ImportState) may hold at most 2^53
# (exact in float64 and in every JSON reader); a record the engine wrote itself (the durable store, a fork's
# source) may hold anything int64 and the service's uint64 fields hold. From 2^53 a stream needs more than
# 2^40 chunks (each adds at most 3 tokens per byte of a 1 MiB chunk, and 1 to the seq and the revision) to
# reach 2^63, so an imported stream's records stay readable for as long as it can live.
MAX_IMPORTED_COUNT = 1 << 53
MAX_STORED_COUNT = (1 << 63) - 1
ORIGINS = ("import", "fork", "store")

_FIXES = {
    "import": "import only the bytes ExportState returned, unchanged, into a server that runs the same model "
              "with the same limits",
    "fork": "the source stream's state is damaged; close it, and fork or import from a good export",
    "store": "the stream's durable record is damaged (the server's state folder was changed, or its limits "
             "lowered); close the stream without keeping its state (CloseStream, keep_state=false) to delete the "
             "record, then send the stream again from the start",
}
_META_KEYS = {"format", "stream_id", "model_fingerprint", "applied_seq", "tokens", "revision", "text_tail",
              "text_offset", "segments", "checksum"}


class _Checks:
    """Validation of one record's metadata and tensors; every refusal names the field (never a value that
    could be another tenant's id or text) and says how to get a good record."""

    def __init__(self, max_count: int, fix: str, error: type[InvalidArgument] = InvalidArgument):
        self.max_count = max_count
        self.fix = fix
        self.error = error

    def bad(self, field: str, problem: str) -> InvalidArgument:
        return self.error(f"state record field {field!r} {problem}; {self.fix}")

    def obj(self, value, field: str, keys: set[str]) -> dict:
        if not isinstance(value, dict):
            raise self.bad(field, f"must be a JSON object, got {_json_type(value)}")
        if set(value) != keys:
            missing, extra = sorted(keys - set(value)), sorted(set(value) - keys)
            raise self.bad(field, f"must hold exactly the keys {sorted(keys)}"
                                  + (f"; missing {missing}" if missing else "")
                                  + (f"; {len(extra)} unknown key(s)" if extra else ""))
        return value

    def array(self, value, field: str, max_len: int) -> list:
        if not isinstance(value, list):
            raise self.bad(field, f"must be a JSON array, got {_json_type(value)}")
        if len(value) > max_len:
            raise self.bad(field, f"holds {len(value)} entries, over this engine's limit of {max_len}")
        return value

    def text(self, value, field: str, max_bytes: int | None = None) -> str:
        if not isinstance(value, str):
            raise self.bad(field, f"must be a JSON string, got {_json_type(value)}")
        try:
            n = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise self.bad(field, "holds a lone surrogate (not valid Unicode)") from None
        if max_bytes is not None and n > max_bytes:
            raise self.bad(field, f"holds {n} UTF-8 bytes, over this engine's limit of {max_bytes}")
        return value

    def count(self, value, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.bad(field, f"must be a JSON integer, got {_json_type(value)}")
        if not 0 <= value <= self.max_count:
            raise self.bad(field, f"is {value}, outside [0, {self.max_count}]")
        return value

    def tensor(self, tensors: dict[str, torch.Tensor], name: str, shape: tuple[int, ...],
               dtype: torch.dtype) -> torch.Tensor:
        t = tensors.get(name)
        if t is None:
            raise self.bad(name, "is missing (a tensor every record holds)")
        if tuple(t.shape) != shape or t.dtype != dtype:
            raise self.bad(name, f"has shape {list(t.shape)} and dtype {str(t.dtype).removeprefix('torch.')}; "
                                 f"this model needs shape {list(shape)} and dtype {str(dtype).removeprefix('torch.')}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise self.bad(name, "holds NaN or infinite values")
        return t


def _json_type(value) -> str:
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"), (list, "array"),
                       (dict, "object")):
        if isinstance(value, kind):
            return name
    return "null" if value is None else type(value).__name__


class StreamCodec:
    """Stream + state <-> record bytes for one model and engine configuration."""

    def __init__(self, model_config: RetNetConfig, fingerprint: str, config: EngineConfig):
        self.model_config = model_config
        self.fingerprint = fingerprint
        self.config = config
        self.kept_pool = KeptPool(config.max_kept_segments)  # every stream's kept segments: one step, few calls

    # ---- new and restored streams share these two constructors

    def new_tracker(self) -> SegmentTracker:
        return SegmentTracker(self.model_config.d_model, **self._tracker_args())

    @property
    def text_params(self) -> dict:
        """A text front's settings: TextAssembler's keyword arguments but the snapshot."""
        return self.config.text_params

    def _tracker_args(self) -> dict:
        """A tracker's limits and the pool of its kept segments (the assembler decides where segments end: in chunk
        mode every piece, one per append, ends one)."""
        c = self.config
        return dict(max_kept=c.max_kept_segments, max_text_bytes=c.max_segment_text_bytes, pool=self.kept_pool)

    # ---- record

    def snapshot(self, stream: Stream, state: RetNetState) -> tuple[dict, dict[str, torch.Tensor]]:
        """The applied side of `stream` and its state [1] as metadata + CPU tensors (copies)."""
        seg_meta, seg_tensors = stream.segments.to_record()
        meta = {
            "format": FORMAT,
            "stream_id": stream.id,
            "model_fingerprint": self.fingerprint,
            "applied_seq": stream.applied_seq,
            "tokens": stream.tokens,
            "revision": stream.revision,
            "text_tail": base64.b64encode(stream.applied_text.tail).decode("ascii"),
            "text_offset": stream.applied_text.offset,
            "segments": seg_meta,
        }
        tensors = {f"state.{k}": v.detach().to("cpu", copy=True) for k, v in state.tensors().items()}
        tensors.update({f"segments.{k}": v for k, v in seg_tensors.items()})
        return meta, tensors

    def encode(self, stream: Stream, state: RetNetState) -> bytes:
        return encode(*self.snapshot(stream, state))

    def decode(self, data: bytes, stream_id: str | None = None, origin: str = "import") -> tuple[Stream, RetNetState]:
        """Record bytes -> (Stream, state [1] on the CPU), after every check of `check`.

        origin says where the bytes come from: "import" (a client's ImportState: counts up to
        MAX_IMPORTED_COUNT), "fork" (an export of a stream of this engine) or "store" (the durable store:
        the recorded id must be stream_id). For "import" and "fork", stream_id replaces the recorded id.
        """
        try:
            meta, tensors = decode(data)
        except InvalidArgument as e:
            if origin == "store":  # unreadable bytes in the store: a damaged record the tenant may delete
                raise DamagedRecord(f"{e}; {_FIXES['store']}") from None
            raise
        return self.build(*self.check(meta, tensors, stream_id, origin))

    def check(self, meta: dict, tensors: dict[str, torch.Tensor], stream_id: str | None = None,
              origin: str = "import") -> tuple[dict, dict[str, torch.Tensor], str]:
        """Validate a decoded record against this model and engine configuration, the one place where
        records are checked (import, fork and loads from the durable store all come here): the exact
        set of keys and tensors, JSON types, valid Unicode, counts in range, the text tail and the segment
        texts within the engine's own bounds, tensor shapes and dtypes, finite values, and the
        consistency of the counters. Returns (meta, tensors, the stream's id); InvalidArgument (naming the
        field) or ModelMismatch otherwise."""
        if origin not in ORIGINS:
            raise ValueError(f"origin={origin!r}; use one of {ORIGINS}")
        c = _Checks(MAX_IMPORTED_COUNT if origin == "import" else MAX_STORED_COUNT, _FIXES[origin],
                    DamagedRecord if origin == "store" else InvalidArgument)
        named = repr(stream_id) if stream_id is not None else "in this record"
        fingerprint = meta.get("model_fingerprint")
        if fingerprint != self.fingerprint:
            shown = repr(fingerprint) if isinstance(fingerprint, str) and len(fingerprint) <= 128 else "another model"
            raise ModelMismatch(
                f"the state of stream {named} was saved by model {shown}, this engine runs {self.fingerprint!r}; "
                "open it with the model that wrote it or start a new stream"
            )
        v1 = meta.get("format") == FORMAT_V1
        c.obj(meta, "metadata", _META_KEYS - {"checksum"} if v1 else _META_KEYS)
        recorded = c.text(meta["stream_id"], "stream_id", self.config.max_stream_id_bytes)
        if not recorded:
            raise c.bad("stream_id", "is empty")
        if stream_id is None:
            stream_id = recorded
        elif origin == "store" and recorded != stream_id:  # never echo the recorded id: it may be another's
            raise c.error(f"the durable record of stream {stream_id!r} holds another stream's state; {c.fix}")
        tokens = c.count(meta["tokens"], "tokens")
        for key in ("applied_seq", "revision"):
            c.count(meta[key], key)
        offset = c.count(meta["text_offset"], "text_offset")
        tail = c.text(meta["text_tail"], "text_tail")
        try:
            raw = base64.b64decode(tail.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise c.bad("text_tail", "is not base64") from None
        if len(raw) > self.config.max_tail_bytes:
            raise c.bad("text_tail", f"holds {len(raw)} bytes, over this engine's tail bound of "
                                     f"{self.config.max_tail_bytes} (max_tail_bytes)")
        if offset + len(raw) > c.max_count:
            raise c.bad("text_offset", f"plus the tail's {len(raw)} bytes passes {c.max_count}")

        m = self.model_config
        names = {f"state.layer.{i}" for i in range(m.n_layers)} | {
            "state.positions", "state.pool_sum", "state.pool_count", "segments.open_sum"}
        seg = c.obj(meta["segments"], "segments", {"open", "kept"})
        kept = c.array(seg["kept"], "segments.kept", self.config.max_kept_segments)
        if kept:
            names.add("segments.kept_embeddings")
        extra = sorted(set(tensors) - names)
        if extra:
            raise c.bad(extra[0], "is not a tensor of a record for this model (or it holds embeddings while "
                                  "segments.kept is empty)")
        for i in range(m.n_layers):
            c.tensor(tensors, f"state.layer.{i}", (1, m.n_heads, m.head_k_dim, m.head_v_dim), torch.float32)
        c.tensor(tensors, "state.pool_sum", (1, m.d_model), torch.float64)
        c.tensor(tensors, "segments.open_sum", (m.d_model,), torch.float64)
        if kept:
            c.tensor(tensors, "segments.kept_embeddings", (len(kept), m.out_embed_dim), torch.float32)
        for name in ("state.positions", "state.pool_count"):
            value = int(c.tensor(tensors, name, (1,), torch.int64)[0])
            if value != tokens:
                raise c.bad(name, f"is {value} while tokens is {tokens}; the two always agree")

        max_text = self.config.max_segment_text_bytes
        o = c.obj(seg["open"], "segments.open", {"count", "start", "end", "text"})
        c.count(o["count"], "segments.open.count")
        if o["count"] > tokens:
            raise c.bad("segments.open.count", f"is {o['count']}, more than the stream's {tokens} tokens")
        end = c.count(o["end"], "segments.open.end")
        start = None if o["start"] is None else c.count(o["start"], "segments.open.start")
        c.text(o["text"], "segments.open.text", max_text)
        spans = [("segments.open", start if start is not None else end, end)]
        for i, k in enumerate(kept):
            field = f"segments.kept[{i}]"
            c.obj(k, field, {"text", "start", "end"})
            c.text(k["text"], f"{field}.text", max_text)
            spans.append((field, c.count(k["start"], f"{field}.start"), c.count(k["end"], f"{field}.end")))
        for field, a, b in spans:
            if not a <= b <= offset:
                raise c.bad(field, f"spans bytes [{a}, {b}), which must lie in order before text_offset {offset}")
        # last, so that a record edited and re-signed is refused naming its bad field
        if not v1 and (not isinstance(meta["checksum"], str) or meta["checksum"] != checksum(meta, tensors)):
            raise c.bad("checksum", "does not match the record's contents (its bytes were changed after it was "
                                    "written)")
        return meta, tensors, stream_id

    def build(self, meta: dict, tensors: dict[str, torch.Tensor], stream_id: str) -> tuple[Stream, RetNetState]:
        """A checked record (see `check`) -> (Stream, state [1] on the CPU)."""
        state = RetNetState.from_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("state.")})
        segments = SegmentTracker.from_record(
            meta["segments"], {k[9:]: v for k, v in tensors.items() if k.startswith("segments.")},
            **self._tracker_args(),
        )
        # where the open segment's text starts is the tracker's open start (records before segment_start
        # existed hold it too, so they continue as they would have)
        text = TextSnapshot(base64.b64decode(meta["text_tail"]), meta["text_offset"], segments.open_start)
        applied_seq = meta["applied_seq"]
        stream = Stream(
            id=stream_id, segments=segments, applied_text=text,
            applied_seq=applied_seq, durable_seq=applied_seq, accepted_seq=applied_seq, tokens=meta["tokens"],
            revision=meta["revision"],
        )
        return stream, state
