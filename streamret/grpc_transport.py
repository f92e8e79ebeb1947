"""gRPC channel and server settings shared by the client and `streamret serve`: keepalive, retries, sizes.

Keepalive. The client pings a connection every CLIENT_KEEPALIVE_S (with or without calls) and drops it when a
ping goes unanswered for KEEPALIVE_TIMEOUT_S, so a server gone without a FIN (a cut cable, a NAT or load
balancer that forgot the connection) is noticed in under a minute instead of hanging a call; the pings also
keep idle connections open through middleboxes that close them after a few minutes. The server accepts pings
as often as every MIN_CLIENT_PING_INTERVAL_S (below the client's interval: gRPC answers a client that pings
more often than the server allows with GOAWAY "too_many_pings") and pings idle clients itself every
SERVER_KEEPALIVE_S to free the calls of clients that vanished.

Retries. Unary RPCs that can run twice without harm are retried by the channel (gRPC's service config
retryPolicy) when they fail with UNAVAILABLE: a draining server, a connection lost before the answer. Calls that
change state in a way a second run would notice (CloseStream, ForkStream, ImportState) and the streaming
calls are not: the client's Append protocol resumes from the server's applied_seq instead (client.py).
"""

from __future__ import annotations

import json

CLIENT_KEEPALIVE_S = 30.0
KEEPALIVE_TIMEOUT_S = 10.0
MIN_CLIENT_PING_INTERVAL_S = 20.0
SERVER_KEEPALIVE_S = 60.0
SERVER_KEEPALIVE_TIMEOUT_S = 20.0

SERVICE = "streamret.v1.StreamRet"
BATCH_SERVICE = "streamret.v1.Batch"
# unary RPCs whose second run answers what the first would have: reads, and an open that creates if missing
IDEMPOTENT_UNARY = ((SERVICE, "OpenStream"), (SERVICE, "GetEmbedding"), (SERVICE, "Summarize"),
                    (SERVICE, "ExportState"), (SERVICE, "GetModelInfo"), (BATCH_SERVICE, "EmbedTable"))
MAX_ATTEMPTS = 5  # gRPC caps a retry policy's maxAttempts at 5


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def service_config(initial_backoff_s: float, max_backoff_s: float) -> str:
    """The channel's service config (JSON): UNAVAILABLE retried on the idempotent unary RPCs, with jittered
    exponential backoff from initial_backoff_s to max_backoff_s, MAX_ATTEMPTS attempts in all."""
    if not 0 < initial_backoff_s <= max_backoff_s:
        raise ValueError(f"retry backoff: need 0 < initial_backoff_s <= max_backoff_s, got {initial_backoff_s} "
                         f"and {max_backoff_s}")
    policy = {"maxAttempts": MAX_ATTEMPTS, "initialBackoff": f"{initial_backoff_s:.3f}s",
              "maxBackoff": f"{max_backoff_s:.3f}s", "backoffMultiplier": 2,
              "retryableStatusCodes": ["UNAVAILABLE"]}
    names = [{"service": service, "method": method} for service, method in IDEMPOTENT_UNARY]
    return json.dumps({"methodConfig": [{"name": names, "retryPolicy": policy}]})


def client_options(max_message_bytes: int, initial_backoff_s: float, max_backoff_s: float) -> list[tuple]:
    """Channel options of streamret.client: message sizes, reconnect backoff, keepalive, the retry policy."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # reconnect quickly after a server restart (gRPC's default backoff grows to 2 minutes)
        ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.keepalive_time_ms", _ms(CLIENT_KEEPALIVE_S)),
        ("grpc.keepalive_timeout_ms", _ms(KEEPALIVE_TIMEOUT_S)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),  # a long Append waiting for acks sends no data: ping anyway
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(initial_backoff_s, max_backoff_s)),
        # a request is kept for a retry only up to this size (gRPC's default, 256 KiB, would leave tables out)
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
    ]


def server_options(max_message_bytes: int, max_pending_calls: int) -> list[tuple]:
    """grpc.aio.server options of `streamret serve`: message sizes, keepalive (module doc), and the calls gRPC
    holds until the server's event loop takes them (ServiceLimits.max_pending_calls): one limit, not gRPC's
    default band where calls are dropped at random, as CANCELLED."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.server.max_pending_requests", max_pending_calls),
        ("grpc.server.max_pending_requests_hard_limit", max_pending_calls),
        ("grpc.keepalive_time_ms", _ms(SERVER_KEEPALIVE_S)),
        ("grpc.keepalive_timeout_ms", _ms(SERVER_KEEPALIVE_TIMEOUT_S)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", _ms(MIN_CLIENT_PING_INTERVAL_S)),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.max_ping_strikes", 2),
    ]
