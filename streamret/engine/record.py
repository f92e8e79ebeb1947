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
                               revision, text tail (base64) and its byte offset, segment texts
"""

from __future__ import annotations

import base64
import json

import safetensors.torch
import torch

from ..errors import InvalidArgument, ModelMismatch
from ..model.retnet import RetNetConfig, RetNetState
from .config import EngineConfig
from .segments import SegmentTracker
from .stream import Stream
from .text import TextAssembler, TextSnapshot

FORMAT = "streamret.stream.v1"
_META_KEY = "streamret"


def encode(meta: dict, tensors: dict[str, torch.Tensor]) -> bytes:
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
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InvalidArgument(f"state record format {meta.get('format')!r} is not {FORMAT!r}")
    return meta, tensors


def _check_count(name: str, value) -> int:
    """A count, seq or byte offset read from a record: an integer in [0, 2^63) (what the service's uint64
    fields and the engine's arithmetic can hold), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise ValueError(f"{name}={value!r} is not an integer in [0, 2^63)")
    return value


def _count(meta: dict, key: str) -> int:
    return _check_count(key, meta[key])


class StreamCodec:
    """Stream + state <-> record bytes for one model and engine configuration."""

    def __init__(self, model_config: RetNetConfig, fingerprint: str, config: EngineConfig):
        self.model_config = model_config
        self.fingerprint = fingerprint
        self.config = config

    # ---- new and restored streams share these two constructors

    def new_tracker(self) -> SegmentTracker:
        return SegmentTracker(self.model_config.d_model, **self._tracker_limits())

    def new_assembler(self, snapshot: TextSnapshot | None = None) -> TextAssembler:
        return TextAssembler(self.config.max_tail_bytes, self.config.segment_by, snapshot)

    def _tracker_limits(self) -> dict:
        c = self.config
        return dict(max_kept=c.max_kept_segments, max_text_bytes=c.max_segment_text_bytes,
                    max_segment_bytes=c.max_segment_bytes)

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

    def decode(self, data: bytes, stream_id: str | None = None) -> tuple[Stream, RetNetState]:
        """Record bytes -> (Stream, state [1] on the CPU). stream_id overrides the recorded id (import)."""
        meta, tensors = decode(data)
        if meta.get("model_fingerprint") != self.fingerprint:
            raise ModelMismatch(
                f"the state of stream {meta.get('stream_id')!r} was saved by model {meta.get('model_fingerprint')!r}"
                f", this engine runs {self.fingerprint!r}; open it with the model that wrote it or start a new stream"
            )
        try:
            state = RetNetState.from_tensors({k[6:]: v for k, v in tensors.items() if k.startswith("state.")})
            self._check_shapes(state)
            segments = SegmentTracker.from_record(
                meta["segments"], {k[9:]: v for k, v in tensors.items() if k.startswith("segments.")},
                **self._tracker_limits(),
            )
            self._check_segments(segments)
            text = TextSnapshot(base64.b64decode(meta["text_tail"]), _count(meta, "text_offset"))
            applied_seq = _count(meta, "applied_seq")
            stream = Stream(
                id=stream_id if stream_id is not None else str(meta["stream_id"]),
                segments=segments, text=self.new_assembler(text), applied_text=text, applied_seq=applied_seq,
                durable_seq=applied_seq, accepted_seq=applied_seq, tokens=_count(meta, "tokens"),
                revision=_count(meta, "revision"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"corrupt streamret state record: {type(e).__name__}: {e}") from None
        return stream, state

    def _check_shapes(self, state: RetNetState) -> None:
        c = self.model_config
        want = [((1, c.n_heads, c.head_k_dim, c.head_v_dim), torch.float32)] * c.n_layers + [
            ((1,), torch.int64), ((1, c.d_model), torch.float64), ((1,), torch.int64)
        ]
        got = [(tuple(t.shape), t.dtype) for t in state.tensors().values()]
        if got != want:
            raise ValueError(f"state tensors {got} do not fit this model, which needs {want}")

    def _check_segments(self, seg: SegmentTracker) -> None:
        c = self.model_config
        open_bytes = [] if seg.open_start is None else [("open.start", seg.open_start)]
        for name, v in [("open.count", seg.open_count), *open_bytes, ("open.end", seg.open_end),
                        *[(f"kept[{i}]", b) for i, span in enumerate(seg.kept_bytes) for b in span]]:
            _check_count(name, v)
        if seg.open_sum.shape != (c.d_model,):
            raise ValueError(f"segment sum has shape {tuple(seg.open_sum.shape)}, this model needs ({c.d_model},)")
        if seg.kept_embeddings is not None and seg.kept_embeddings.shape[1:] != (c.out_embed_dim,):
            raise ValueError(f"segment embeddings have width {seg.kept_embeddings.shape[1:]}, need {c.out_embed_dim}")
