"""`streamret serve`: run the gRPC service in the foreground until SIGTERM or Ctrl-C.

    streamret serve --model random:tiny --port 50051 --state-dir ./states
    streamret serve --host 0.0.0.0 --auth-tokens tokens.txt --tls-cert cert.pem --tls-key key.pem
    streamret serve ... --tls-client-ca ca.pem   # mutual TLS: clients need a certificate signed by ca.pem
    streamret serve --http-port 8080      # also OpenAI-compatible HTTP embeddings (streamret/service/http.py)

Every flag can also be set by an environment variable, STREAMRET_ and the flag's name in capitals
(--state-dir: STREAMRET_STATE_DIR), or by a TOML file, `--config FILE` or STREAMRET_CONFIG, whose keys
are the flag names (`state-dir = "states"`); precedence: flag > environment > file > default
(streamret/layered_options.py).

The token file has one `TOKEN TENANT [read|write]` per line (streamret/service/auth.py). On SIGTERM
the server drains for at most --drain-timeout-s: health turns NOT_SERVING, new calls get UNAVAILABLE, running
calls finish, queued chunks are applied, every stream's applied chunks are written to the durable store, and
the process exits 0. Chunks not applied in that time are left for the clients to resend (from durable_seq + 1);
the last log line says what is durable and what is not.
"""

from __future__ import annotations

import argparse

from streamret.layered_options import PREFIX, LayeredOptions
from streamret.logs import LOG_FORMATS

from . import ENGINE_PROCS_HELP, add_model_args, check_engine_procs
from .cluster import add_ray_args, start_backend

MiB = 1024 * 1024


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve embeddings and summaries of text streams over gRPC",
        description="Serve embeddings and summaries of text streams over gRPC (streamret.v1.StreamRet, "
                    "streamret.v1.Batch, health, reflection), and with --http-port over HTTP (OpenAI-compatible "
                    "POST /v1/embeddings, /health, /info), until SIGTERM or Ctrl-C.",
        epilog=f"Every option also comes from an environment variable ({PREFIX} + the option's name in capitals, "
               f"shown as [env: ...]) and from a TOML file given by --config FILE or {PREFIX}CONFIG, whose keys "
               "are the flag names without dashes (state-dir = \"states\", port = 50051, insecure-bind = true). "
               "Precedence: flag > environment > file > default. An unknown key in the file is an error.")
    add_model_args(p)
    net = p.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    net.add_argument("--port", type=int, default=50051, help="port (default 50051; 0 picks a free one)")
    net.add_argument("--auth-tokens", metavar="FILE",
                     help="bearer tokens -> tenants, one 'TOKEN TENANT [read|write]' per line")
    net.add_argument("--tls-cert", metavar="PEM", help="server certificate chain (with --tls-key)")
    net.add_argument("--tls-key", metavar="PEM", help="server private key")
    net.add_argument("--tls-client-ca", metavar="PEM",
                     help="mutual TLS: require a client certificate signed by this CA (with --tls-cert/--tls-key; "
                          "gRPC and HTTPS)")
    net.add_argument("--insecure-bind", action="store_true",
                     help="allow a non-loopback --host without --auth-tokens (a trusted network guards the port)")
    net.add_argument("--metrics-port", type=int,
                     help="serve Prometheus /metrics on this port (0 picks a free one; default: off)")
    net.add_argument("--metrics-host", default="127.0.0.1",
                     help="address /metrics binds to (default 127.0.0.1); /metrics needs no token, so bind it "
                          "wider (0.0.0.0) only where a trusted network guards the port")
    net.add_argument("--http-port", type=int,
                     help="also serve HTTP on --host at this port (0 picks a free one): OpenAI-compatible "
                          "POST /v1/embeddings, GET /health, GET /info, with the same tokens and limits "
                          "(default: off)")
    state = p.add_argument_group("state")
    state.add_argument("--state-dir", help="durable store: a folder or an fsspec URL (default: none, states "
                                          "live in memory only)")
    state.add_argument("--durable-every-chunks", type=int, help="write a stream's record after every N chunks")
    state.add_argument("--durable-every-s", type=float, help="... or when its oldest unsaved change is T s old")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-message-mb", type=float, default=128, help="largest gRPC message (default 128 MiB)")
    lim.add_argument("--chunk-bytes", type=int, default=1 * MiB, help="largest Append chunk (default 1 MiB)")
    lim.add_argument("--max-streams-per-tenant", type=int, default=10_000, help="default 10000")
    lim.add_argument("--max-calls-per-tenant", type=int, default=128,
                     help="calls one tenant may have running at once (default 128; an Append call carries any "
                          "number of streams)")
    lim.add_argument("--max-pending-calls", type=int, default=16_384,
                     help="new calls gRPC holds until the server takes them (a burst while it is busy); past it gRPC "
                          "refuses them with CANCELLED (default 16384)")
    lim.add_argument("--max-batch-calls-per-tenant", type=int, default=2,
                     help="Arrow tables (EmbedTable, EmbedTables, AppendEvents) one tenant may have in work at once "
                          "(default 2)")
    lim.add_argument("--max-imports-per-tenant", type=int, default=2,
                     help="ImportState calls one tenant may have in work at once (default 2; each holds its record "
                          "about 4 times while it runs, up to --max-message-mb each)")
    lim.add_argument("--idle-evict-s", type=float, default=600.0,
                     help="evict streams idle this long to the durable store (default 600; 0: never)")
    lim.add_argument("--busy-wait-s", type=float, default=5.0,
                     help="how long a chunk waits for a full engine before RESOURCE_EXHAUSTED (default 5)")
    lim.add_argument("--drain-timeout-s", type=float, default=30.0,
                     help="on SIGTERM, how long the drain may take in all (running calls, then queued chunks); "
                          "chunks not applied by then are left for clients to resend (default 30)")
    eng = p.add_argument_group("engine")
    eng.add_argument("--max-step-tokens", type=int,
                     help="tokens one model step packs over all streams (default 32768 on a GPU, 16384 on the "
                          "CPU); a longer chunk is split across steps")
    eng.add_argument("--engine-procs", default="auto", metavar="N", help=ENGINE_PROCS_HELP)
    eng.add_argument("--front-procs", type=int, default=1, metavar="F",
                     help="gRPC server processes on the one port, each connected to every engine process (the "
                          "kernel spreads connections over them): past one process's GIL for the service's own "
                          "work; per-tenant limits count per process; health, /metrics and HTTP are the first's "
                          "(streamret/service/fronts.py; default 1)")
    p.add_argument("--log-level", default="INFO",
                   help="DEBUG, INFO, WARNING (default INFO); INFO has one access line per call (method, tenant, "
                        "status, duration; never a text)")
    p.add_argument("--log-format", default="text", choices=LOG_FORMATS,
                   help="text lines, or json: one JSON object per line with the same fields (default text)")
    add_ray_args(p)  # --ray/--workers/--gpus-per-worker: see commands/cluster.py
    p.set_defaults(run=LayeredOptions(p, run))  # after the last option: --config and STREAMRET_* for each


def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    import logging
    import os

    from streamret.engine import EngineConfig, ShardedEngine, start_engine
    from streamret.engine.shards import engine_procs
    from streamret.logs import setup_logging
    from streamret.service.fronts import FrontProcesses, front_procs, log_served
    from streamret.service.limits import ServiceLimits
    from streamret.service.server import ServerConfig, serve

    setup_logging(args.log_level, args.log_format)
    limits = ServiceLimits(max_message_bytes=int(args.max_message_mb * MiB), max_chunk_bytes=args.chunk_bytes,
                           max_streams_per_tenant=args.max_streams_per_tenant, idle_evict_s=args.idle_evict_s,
                           busy_wait_s=args.busy_wait_s, max_calls_per_tenant=args.max_calls_per_tenant,
                           max_pending_calls=args.max_pending_calls,
                           max_batch_calls_per_tenant=args.max_batch_calls_per_tenant,
                           max_imports_per_tenant=args.max_imports_per_tenant)
    config = ServerConfig(host=args.host, port=args.port, auth_tokens=args.auth_tokens, tls_cert=args.tls_cert,
                          tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
                          insecure_bind=args.insecure_bind, metrics_port=args.metrics_port,
                          metrics_host=args.metrics_host, http_port=args.http_port, model_name=args.model,
                          limits=limits, drain_timeout_s=args.drain_timeout_s)
    config.check()  # refuse a bad bind before loading a model
    check_engine_procs(args)
    fronts = front_procs(args.front_procs)
    if fronts > 1 and args.ray is not None:
        raise ValueError(f"--front-procs {args.front_procs} needs engine processes on this host; with --ray the "
                         "engines live in Ray workers: leave --front-procs at 1")

    engine_config = dataclasses.replace(EngineConfig(), max_chunk_bytes=args.chunk_bytes)
    if args.durable_every_chunks is not None:
        engine_config = dataclasses.replace(engine_config, durable_every_chunks=args.durable_every_chunks)
    if args.durable_every_s is not None:
        engine_config = dataclasses.replace(engine_config, durable_every_s=args.durable_every_s)
    if args.max_step_tokens is not None:
        if args.max_step_tokens < 1:
            raise ValueError(f"--max-step-tokens must be >= 1, got {args.max_step_tokens}")
        engine_config = dataclasses.replace(engine_config, max_step_tokens=args.max_step_tokens)
    if args.ray is not None:  # the engines live in Ray workers; this process is a gateway (commands/cluster.py)
        engine = start_backend(args, engine_config)
    elif fronts > 1:  # every front connects to the engine processes: they are processes even when there is one
        engine = ShardedEngine(args.model, args.device, args.state_dir, engine_config, args.dtype,
                               procs=engine_procs(args.engine_procs, args.device), listen=True)
    else:
        engine = start_engine(args.model, args.device, args.state_dir, engine_config, args.dtype,
                              procs=args.engine_procs)
    if args.ray is None and args.state_dir is None:
        # (after the model loaded: a bad --model is the one line a user sees)
        logging.getLogger("streamret.serve").warning(
            "no --state-dir: stream states live in this process only, a restart loses them, and acks "
            "report durable_seq 0; pass --state-dir DIR (or an fsspec URL) to keep them")

    servers = []

    def started(server) -> None:
        servers.append(server)
        scheme = "https" if args.tls_cert else "http"
        print(f"streamret serving {args.model} on {args.host}:{server.port}"
              + (f", metrics on {server.metrics_url}" if server.metrics_port is not None else "")
              + (f", HTTP on {scheme}://{args.host}:{server.http_port}" if server.http_port is not None else "")
              + (f", front process pids {' '.join(map(str, [os.getpid(), *others.pids]))}" if others else ""),
              flush=True)

    others = None if fronts == 1 else FrontProcesses(engine, config, fronts, args.log_level, args.log_format)
    try:
        asyncio.run(serve(engine, config, on_started=started, fronts=others))
        if others is not None and servers:
            log_served(0, servers[0])
    finally:
        # (the drain above applied and wrote what it could in --drain-timeout-s: this bounds the engines' last word)
        engine.shutdown() if args.ray is not None else engine.shutdown(timeout_s=args.drain_timeout_s)
    return 0
