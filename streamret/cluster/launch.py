"""Joining a Ray cluster: start or find the coordinator, return this process's gateway engine.

    engine = join_cluster("local", spec, workers=2, resources=WorkerResources(num_gpus=0))
    ... StreamRetServer(engine, config) ...
    engine.shutdown()          # the gateway that started the cluster also drains and stops it

The first gateway creates the coordinator (named, in the `streamret` namespace), which starts the
workers; later gateways (`streamret serve --ray ADDRESS` on other nodes) and `streamret cluster`
find it by name. On a cluster the coordinator is detached, so gateways may come and go; on a local
Ray started by this process everything ends with the process.
"""

from __future__ import annotations

import logging

from .coordinator import COORDINATOR_NAME, NAMESPACE, Coordinator
from .router import ClusterEngine
from .wire import WorkerResources, WorkerSpec

log = logging.getLogger("streamret.cluster")

LOCAL = "local"


def init_ray(address: str | None, **kwargs) -> None:
    """Connect to Ray (`local` or None: start a private one) unless this process already is."""
    import ray

    if ray.is_initialized():
        return
    local = address in (None, "", LOCAL)
    context = ray.init(address=LOCAL if local else address, namespace=NAMESPACE, **kwargs)
    if local:  # where `streamret cluster status|scale|stop --address` finds it
        log.info("started a local Ray at %s", context.address_info.get("gcs_address"))


def find_coordinator(address: str | None = "auto"):
    """The running cluster's coordinator (ValueError when none runs there)."""
    import ray

    init_ray(address, log_to_driver=False)
    try:
        return ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
    except ValueError:
        raise ValueError(f"no streamret cluster runs on the Ray cluster at {address}; start one with "
                         "`streamret serve --ray ADDRESS --workers N`") from None


def join_cluster(address: str | None, spec: WorkerSpec, workers: int, resources: WorkerResources, *,
                 connect_timeout_s: float = 600.0, **gateway_options) -> ClusterEngine:
    """This process's gateway engine; starts the coordinator and its workers when none runs yet."""
    import ray

    init_ray(address)
    local = address in (None, "", LOCAL)
    if local and resources.num_gpus:
        have = ray.cluster_resources().get("GPU", 0)
        if have < workers * resources.num_gpus:
            raise ValueError(f"{workers} workers x {resources.num_gpus} GPU need {workers * resources.num_gpus} "
                             f"GPUs; this machine has {have:g}. Use --gpus-per-worker 0 for CPU workers, or a "
                             "fraction to share a GPU")
    try:
        coordinator = ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE)
        created = False
    except ValueError:
        options = dict(name=COORDINATOR_NAME, namespace=NAMESPACE, get_if_exists=True, num_cpus=0, max_restarts=3)
        if not local:
            options["lifetime"] = "detached"
        coordinator = ray.remote(Coordinator).options(**options).remote(spec, workers, resources)
        created = True
    try:
        status = ray.get(coordinator.status.remote(), timeout=connect_timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise TimeoutError(f"the cluster's {workers} workers did not start within {connect_timeout_s:.0f} s; "
                           f"each needs {resources.num_gpus:g} GPU and {resources.num_cpus:g} CPU: check `ray status` "
                           "for free resources (or lower --workers / --gpus-per-worker)") from None
    if not created and (status["model"], status["state_url"]) != (spec.model, spec.state_url):
        raise ValueError(f"the cluster on {address} runs model {status['model']!r} with states at "
                         f"{status['state_url']!r}; start this gateway with the same --model and --state-dir")
    log.info("%s streamret cluster: %d workers", "started a" if created else "joined the",
             len([w for w in status["workers"].values() if w["state"] == "live"]))
    return ClusterEngine(coordinator, owns_cluster=created and local, connect_timeout_s=connect_timeout_s,
                         **gateway_options)
