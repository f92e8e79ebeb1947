"""`streamret cluster status|scale|stop`, and the `--ray` options of `streamret serve`.

    streamret serve --ray --workers 2 --gpus-per-worker 0 --state-dir ./states   # a private local Ray
    streamret serve --ray auto --workers 8 --state-dir s3://bucket/states        # join a running cluster
    streamret cluster status --address auto
    streamret cluster scale 12 --address auto    # add workers, or drain the newest ones
    streamret cluster stop --address auto        # drain every worker (states durable), stop, gateways exit

See README "Running on a Ray cluster" and streamret/cluster/ for routing and failover.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

from streamret.cluster.defaults import GPUS_PER_WORKER_HELP, default_gpus_per_worker


def add_ray_args(parser: argparse.ArgumentParser) -> None:
    """The options `streamret serve` takes to run its engine on Ray workers."""
    g = parser.add_argument_group("cluster (Ray; pip install 'streamret[ray]')")
    g.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="serve from StreamWorker actors on Ray: alone, start a local Ray; with an address "
                        "(auto, HOST:6379, ray://HOST:10001), join that cluster")
    g.add_argument("--workers", type=int, default=1, help="StreamWorker actors to start (default 1)")
    g.add_argument("--gpus-per-worker", type=float, help=GPUS_PER_WORKER_HELP)  # the same as `embed --ray`
    g.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs Ray reserves per worker (default 1)")
    g.add_argument("--max-restarts", type=int, default=4,
                   help="times Ray restarts a crashed worker before its streams move to others (default 4)")


def start_backend(args: argparse.Namespace, engine_config):
    """The gateway's engine for `serve --ray`: a ClusterEngine over the cluster's workers."""
    from streamret.cluster.launch import join_cluster
    from streamret.cluster.wire import WorkerResources, WorkerSpec

    if not args.state_dir:
        raise ValueError("--ray needs --state-dir: a folder every Ray node can reach (one node: any local path) "
                         "or an fsspec URL such as s3://bucket/states; streams move between workers through it")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    gpus = args.gpus_per_worker
    if gpus is None:
        import ray

        from streamret.cluster.launch import init_ray

        init_ray(args.ray)
        gpus = default_gpus_per_worker(args.device, ray.cluster_resources().get("GPU", 0))
    if gpus < 0:
        raise ValueError(f"--gpus-per-worker must be >= 0, got {gpus}")
    device = "cpu" if gpus == 0 and args.device == "auto" else args.device
    spec = WorkerSpec(model=args.model, state_url=args.state_dir, device=device,
                      dtype=args.dtype, engine=engine_config)
    resources = WorkerResources(num_gpus=gpus, num_cpus=args.cpus_per_worker,
                                max_restarts=args.max_restarts)
    return join_cluster(args.ray, spec, args.workers, resources)


def register(subparsers) -> None:
    p = subparsers.add_parser("cluster", help="inspect and resize a streamret cluster on Ray")
    sub = p.add_subparsers(title="actions", metavar="<action>", dest="action", required=True)
    for name, text in (("status", "workers, their streams and load, gateways"),
                       ("scale", "add workers, or drain the newest ones (their streams move)"),
                       ("stop", "drain every worker (each writes its streams durable), stop the cluster and its "
                                "gateways")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--address", default="auto", help="the Ray cluster (default auto: RAY_ADDRESS or local)")
        if name == "scale":
            q.add_argument("n", type=int, metavar="N", help="the number of workers to run")
        if name != "stop":
            q.add_argument("--json", action="store_true", help="print the status as JSON")
        else:
            q.add_argument("--wait-gateways-s", type=float, default=60.0,
                           help="how long to wait for the gateways (`serve --ray`) to drain and exit (default 60)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import ray

    from streamret.cluster.launch import find_coordinator

    coordinator = find_coordinator(args.address)
    if args.action == "stop":
        status = ray.get(coordinator.status.remote())
        out = ray.get(coordinator.stop.remote())
        left = wait_for_gateways(coordinator, args.wait_gateways_s)
        with contextlib.suppress(ray.exceptions.RayError):  # gone already: a local Ray ends with its gateway
            ray.kill(coordinator)
        print(describe_stop(status, out, left))
        return 0
    if args.action == "scale":
        if args.n < 1:
            raise ValueError(f"N must be >= 1, got {args.n}; `streamret cluster stop` stops the cluster")
        status = ray.get(coordinator.scale.remote(args.n))
    else:
        status = ray.get(coordinator.status.remote())
    print(json.dumps(status, indent=2, default=str) if args.json else format_status(status))
    return 0


def wait_for_gateways(coordinator, timeout_s: float) -> list[str]:
    """Until the gateways have drained and left (their view said the cluster stopped), at most timeout_s;
    returns those still there. A coordinator that went away (its Ray ended with a gateway) has none."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            left = ray.get(coordinator.gateways.remote(), timeout=10.0)
        except (ray.exceptions.RayError, TimeoutError):
            return []
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def describe_stop(status: dict, out: dict, left: list[str]) -> str:
    """The last line of `cluster stop`: what was stopped, and precisely what is durable where."""
    report, failed = out["report"], out["failed"]
    workers = len(status["workers"])
    line = f"stopped: {workers - len(failed)} of {workers} worker(s) drained"
    if report is not None:
        line += f"; {report.describe()} in {status['state_url']}"
    if failed:
        line += (f"; worker(s) {', '.join(failed)} could not be drained: their streams are durable up to their "
                 "last record (durable_seq)")
    line += "; chunks that clients sent and were not acknowledged are not durable: clients resend them"
    gateways = len(status["gateways"])
    if left:
        line += f"; {len(left)} of {gateways} gateway(s) did not exit yet: {', '.join(left)}"
    elif gateways:
        line += f"; its {gateways} gateway(s) stopped"
    return line


def format_status(status: dict) -> str:
    lines = [f"model {status['model']}, states at {status['state_url']}, view {status['generation']}, "
             f"{status['target']} workers wanted"]
    for name, w in sorted(status["workers"].items()):
        if "error" in w:
            lines.append(f"  {name:<32} {w['state']:<9} {w['error']}")
            continue
        streams = w.get("streams", {})
        lines.append(f"  {name:<32} {w['state']:<9} streams device/host/evicted "
                     f"{streams.get('device', 0)}/{streams.get('host', 0)}/{streams.get('durable', 0)}, "
                     f"{w.get('tokens_processed', 0)} tokens, queue {w.get('queue_depth', 0)}")
    lines.append(f"  gateways: {', '.join(status['gateways']) or 'none'}")
    return "\n".join(lines)
