from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbeddingRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMBEDDING_ROLE_UNSPECIFIED: _ClassVar[EmbeddingRole]
    EMBEDDING_ROLE_QUERY: _ClassVar[EmbeddingRole]
    EMBEDDING_ROLE_DOCUMENT: _ClassVar[EmbeddingRole]
EMBEDDING_ROLE_UNSPECIFIED: EmbeddingRole
EMBEDDING_ROLE_QUERY: EmbeddingRole
EMBEDDING_ROLE_DOCUMENT: EmbeddingRole

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("model", "fingerprint", "embedding_dim", "tokenizer", "dtype", "device", "version", "max_chunk_bytes", "max_message_bytes", "max_streams_per_tenant", "batch_in_flight", "roles")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAMS_PER_TENANT_FIELD_NUMBER: _ClassVar[int]
    BATCH_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    model: str
    fingerprint: str
    embedding_dim: int
    tokenizer: str
    dtype: str
    device: str
    version: str
    max_chunk_bytes: int
    max_message_bytes: int
    max_streams_per_tenant: int
    batch_in_flight: int
    roles: _containers.RepeatedScalarFieldContainer[EmbeddingRole]
    def __init__(self, model: _Optional[str] = ..., fingerprint: _Optional[str] = ..., embedding_dim: _Optional[int] = ..., tokenizer: _Optional[str] = ..., dtype: _Optional[str] = ..., device: _Optional[str] = ..., version: _Optional[str] = ..., max_chunk_bytes: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_streams_per_tenant: _Optional[int] = ..., batch_in_flight: _Optional[int] = ..., roles: _Optional[_Iterable[_Union[EmbeddingRole, str]]] = ...) -> None: ...

class OpenStreamRequest(_message.Message):
    __slots__ = ("stream_id", "create_if_missing", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_IF_MISSING_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    create_if_missing: bool
    labels: _containers.ScalarMap[str, str]
    def __init__(self, stream_id: _Optional[str] = ..., create_if_missing: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class OpenStreamResponse(_message.Message):
    __slots__ = ("stream_id", "applied_seq", "durable_seq", "tokens", "model_fingerprint", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    DURABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    applied_seq: int
    durable_seq: int
    tokens: int
    model_fingerprint: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, stream_id: _Optional[str] = ..., applied_seq: _Optional[int] = ..., durable_seq: _Optional[int] = ..., tokens: _Optional[int] = ..., model_fingerprint: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("stream_id", "seq", "text", "data", "flush", "return_segment_embedding", "durable")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    RETURN_SEGMENT_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    seq: int
    text: str
    data: bytes
    flush: bool
    return_segment_embedding: bool
    durable: bool
    def __init__(self, stream_id: _Optional[str] = ..., seq: _Optional[int] = ..., text: _Optional[str] = ..., data: _Optional[bytes] = ..., flush: _Optional[bool] = ..., return_segment_embedding: _Optional[bool] = ..., durable: _Optional[bool] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ("stream_id", "seq", "applied_seq", "durable_seq", "tokens", "duplicate", "error_code", "error_message", "segment_embedding", "retryable")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    DURABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    seq: int
    applied_seq: int
    durable_seq: int
    tokens: int
    duplicate: bool
    error_code: int
    error_message: str
    segment_embedding: _containers.RepeatedScalarFieldContainer[float]
    retryable: bool
    def __init__(self, stream_id: _Optional[str] = ..., seq: _Optional[int] = ..., applied_seq: _Optional[int] = ..., durable_seq: _Optional[int] = ..., tokens: _Optional[int] = ..., duplicate: _Optional[bool] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ..., segment_embedding: _Optional[_Iterable[float]] = ..., retryable: _Optional[bool] = ...) -> None: ...

class GetEmbeddingRequest(_message.Message):
    __slots__ = ("stream_id", "role")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    role: EmbeddingRole
    def __init__(self, stream_id: _Optional[str] = ..., role: _Optional[_Union[EmbeddingRole, str]] = ...) -> None: ...

class GetEmbeddingResponse(_message.Message):
    __slots__ = ("stream_id", "applied_seq", "tokens", "values", "role")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    applied_seq: int
    tokens: int
    values: _containers.RepeatedScalarFieldContainer[float]
    role: EmbeddingRole
    def __init__(self, stream_id: _Optional[str] = ..., applied_seq: _Optional[int] = ..., tokens: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ..., role: _Optional[_Union[EmbeddingRole, str]] = ...) -> None: ...

class SummarizeRequest(_message.Message):
    __slots__ = ("stream_id", "max_segments", "mode", "max_new_tokens")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNSPECIFIED: _ClassVar[SummarizeRequest.Mode]
        MODE_GENERATIVE: _ClassVar[SummarizeRequest.Mode]
        MODE_EXTRACTIVE: _ClassVar[SummarizeRequest.Mode]
    MODE_UNSPECIFIED: SummarizeRequest.Mode
    MODE_GENERATIVE: SummarizeRequest.Mode
    MODE_EXTRACTIVE: SummarizeRequest.Mode
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    max_segments: int
    mode: SummarizeRequest.Mode
    max_new_tokens: int
    def __init__(self, stream_id: _Optional[str] = ..., max_segments: _Optional[int] = ..., mode: _Optional[_Union[SummarizeRequest.Mode, str]] = ..., max_new_tokens: _Optional[int] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("text", "start_byte", "end_byte", "score")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_BYTE_FIELD_NUMBER: _ClassVar[int]
    END_BYTE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_byte: int
    end_byte: int
    score: float
    def __init__(self, text: _Optional[str] = ..., start_byte: _Optional[int] = ..., end_byte: _Optional[int] = ..., score: _Optional[float] = ...) -> None: ...

class SummarizeResponse(_message.Message):
    __slots__ = ("stream_id", "applied_seq", "segments", "generated_text")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TEXT_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    applied_seq: int
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    generated_text: str
    def __init__(self, stream_id: _Optional[str] = ..., applied_seq: _Optional[int] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., generated_text: _Optional[str] = ...) -> None: ...

class CloseStreamRequest(_message.Message):
    __slots__ = ("stream_id", "keep_state", "max_segments", "role")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    KEEP_STATE_FIELD_NUMBER: _ClassVar[int]
    MAX_SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    keep_state: bool
    max_segments: int
    role: EmbeddingRole
    def __init__(self, stream_id: _Optional[str] = ..., keep_state: _Optional[bool] = ..., max_segments: _Optional[int] = ..., role: _Optional[_Union[EmbeddingRole, str]] = ...) -> None: ...

class CloseStreamResponse(_message.Message):
    __slots__ = ("embedding", "summary")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    embedding: GetEmbeddingResponse
    summary: SummarizeResponse
    def __init__(self, embedding: _Optional[_Union[GetEmbeddingResponse, _Mapping]] = ..., summary: _Optional[_Union[SummarizeResponse, _Mapping]] = ...) -> None: ...

class ForkStreamRequest(_message.Message):
    __slots__ = ("source_id", "new_id")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_ID_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    new_id: str
    def __init__(self, source_id: _Optional[str] = ..., new_id: _Optional[str] = ...) -> None: ...

class ExportStateRequest(_message.Message):
    __slots__ = ("stream_id",)
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    def __init__(self, stream_id: _Optional[str] = ...) -> None: ...

class ForkStreamResponse(_message.Message):
    __slots__ = ("stream_id", "applied_seq", "durable_seq", "tokens", "model_fingerprint", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    DURABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    applied_seq: int
    durable_seq: int
    tokens: int
    model_fingerprint: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, stream_id: _Optional[str] = ..., applied_seq: _Optional[int] = ..., durable_seq: _Optional[int] = ..., tokens: _Optional[int] = ..., model_fingerprint: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExportStateResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ImportStateRequest(_message.Message):
    __slots__ = ("stream_id", "state")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    state: ExportStateResponse
    def __init__(self, stream_id: _Optional[str] = ..., state: _Optional[_Union[ExportStateResponse, _Mapping]] = ...) -> None: ...

class ImportStateResponse(_message.Message):
    __slots__ = ("stream_id", "applied_seq", "durable_seq", "tokens", "model_fingerprint", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    DURABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    applied_seq: int
    durable_seq: int
    tokens: int
    model_fingerprint: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, stream_id: _Optional[str] = ..., applied_seq: _Optional[int] = ..., durable_seq: _Optional[int] = ..., tokens: _Optional[int] = ..., model_fingerprint: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EmbedTableRequest(_message.Message):
    __slots__ = ("arrow_ipc", "role")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    role: EmbeddingRole
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., role: _Optional[_Union[EmbeddingRole, str]] = ...) -> None: ...

class EmbedTableResponse(_message.Message):
    __slots__ = ("arrow_ipc", "role")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    role: EmbeddingRole
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., role: _Optional[_Union[EmbeddingRole, str]] = ...) -> None: ...

class EmbedTablesRequest(_message.Message):
    __slots__ = ("arrow_ipc", "role")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    role: EmbeddingRole
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., role: _Optional[_Union[EmbeddingRole, str]] = ...) -> None: ...

class EmbedTablesResponse(_message.Message):
    __slots__ = ("arrow_ipc", "role")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    role: EmbeddingRole
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., role: _Optional[_Union[EmbeddingRole, str]] = ...) -> None: ...

class AppendEventsRequest(_message.Message):
    __slots__ = ("arrow_ipc",)
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    def __init__(self, arrow_ipc: _Optional[bytes] = ...) -> None: ...

class AppendEventsResponse(_message.Message):
    __slots__ = ("arrow_ipc",)
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    def __init__(self, arrow_ipc: _Optional[bytes] = ...) -> None: ...
