"""Scale-out on Ray: the same service, its engines in StreamWorker actors.

    launch.py        join or start a cluster; returns this process's gateway engine
    router.py        ClusterEngine: the Engine API, each call sent to its stream's owner
    rendezvous.py    which worker owns a stream (highest random weight)
    coordinator.py   the worker list: start, watch, replace, scale, drain
    worker.py        StreamWorker: an engine in an actor, calls kept in order per gateway
    fenced_store.py  the shared durable store, writes fenced by owner epochs
    wire.py          worker spec and resources; errors as values between processes
    defaults.py      defaults shared with `embed --ray` (GPUs per worker)
"""
