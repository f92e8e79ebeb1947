"""Every RPC of both services by name, for the table-driven tests: `call(rpc, request)` returns
(status, details, response) instead of raising, so a test can compare statuses across RPCs."""

from __future__ import annotations

import grpc

from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc

BATCH_RPCS = ("EmbedTable", "EmbedTables", "AppendEvents")


class RpcCaller:
    def __init__(self, target: str, metadata: tuple = (), options: tuple = ()):
        self.channel = grpc.insecure_channel(target, options=list(options))
        self.streams, self.batch = pb_grpc.StreamRetStub(self.channel), pb_grpc.BatchStub(self.channel)
        self.md = tuple(metadata)

    def call(self, rpc: str, request):
        """(status, details, response); a streaming request is given as a list, a streaming answer comes as one."""
        method = getattr(self.batch if rpc in BATCH_RPCS else self.streams, rpc)
        try:
            if isinstance(request, list):
                return grpc.StatusCode.OK, "", list(method(iter(request), metadata=self.md, timeout=60))
            return grpc.StatusCode.OK, "", method(request, metadata=self.md, timeout=60)
        except grpc.RpcError as e:
            return e.code(), e.details(), None
