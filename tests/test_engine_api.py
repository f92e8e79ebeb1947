"""Engine, ShardedEngine and the Ray gateway's ClusterEngine all implement EngineAPI, the one type the service and
the batch job are written against: every member, with the protocol's parameters in the protocol's order and defaults."""

import inspect

import pytest

from streamret.cluster.router import ClusterEngine
from streamret.engine import Engine, EngineAPI
from streamret.engine.shards import ShardedEngine

MEMBERS = sorted(name for name in vars(EngineAPI) if not name.startswith("_"))


def _params(fn) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("cls", [Engine, ShardedEngine, ClusterEngine])
@pytest.mark.parametrize("name", [n for n in MEMBERS if inspect.isfunction(vars(EngineAPI)[n])])
def test_each_engine_has_every_method_of_the_protocol_with_its_parameters(cls, name):
    wanted = _params(getattr(EngineAPI, name))
    got = _params(getattr(cls, name))
    assert got[: len(wanted)] == wanted, f"{cls.__name__}.{name}{got} does not take EngineAPI.{name}{wanted}"
    assert all(default is not inspect.Parameter.empty for _, default in got[len(wanted) :])


def test_the_attributes_of_the_protocol_are_there():
    assert "embed_dim" in MEMBERS and "fingerprint" in EngineAPI.__annotations__
    with Engine.from_model("random:tiny", device="cpu") as engine:
        assert isinstance(engine.fingerprint, str) and engine.embed_dim == engine.model.config.out_embed_dim
    # (ClusterEngine sets both from its workers' hello; constructing one needs a cluster: test_cluster_ray.py)
