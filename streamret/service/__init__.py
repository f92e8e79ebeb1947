"""The gRPC service (API in proto/streamret/v1/streamret.proto).

One chunk's path: server.py (the grpc.aio server, health, reflection, drain) -> gate.py (who calls,
draining, exceptions to statuses via status.py) -> stream_servicer.py or batch_servicer.py (protobuf
and Arrow in and out) -> tenant_engine.py (tenant stream ids, limits.py, async engine calls) -> the
engine. auth.py holds the token file format, metrics.py the Prometheus metrics. Kept free of imports
so that clients can load proto_gen alone.
"""
