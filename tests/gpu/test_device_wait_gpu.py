"""EngineConfig.device_wait on a GPU: a step's results are the same either way, and a "sleep" wait leaves the
core free while the device works (a "spin" one keeps it busy)."""

from __future__ import annotations

import time

import pytest
import torch

from streamret.engine import Engine, EngineConfig
from streamret.engine.staging import Slot

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs a GPU", allow_module_level=True)


def _wait_cpu_share(blocking: bool) -> float:
    """The waiting thread's CPU time over the wall time of a wait for 0.1 s or more of device work (a spin
    kernel of a given cycle count: at an idle clock it runs shorter, so the count grows until it is long
    enough)."""
    slot = Slot(blocking)
    cycles = int(2e8)
    for _ in range(5):
        torch.cuda.synchronize()
        torch.cuda._sleep(cycles)
        done = slot.release()
        wall, cpu = time.perf_counter(), time.thread_time()
        done.synchronize()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        if wall > 0.1:
            return cpu / wall
        cycles *= 4
    raise AssertionError(f"{cycles // 4} cycles of device work took {wall:.3f} s: too short to tell a sleep "
                         "from a spin")


def test_a_sleeping_wait_leaves_the_core_free():
    assert _wait_cpu_share(True) < 0.2
    assert _wait_cpu_share(False) > 0.5  # CUDA's default: the same wait spins


def test_the_results_do_not_depend_on_the_wait():
    text = b"The first sentence is here. Then another one follows it. " * 40
    got = {}
    for setting in ("sleep", "spin"):
        with Engine.from_model("random:small", device="cuda", config=EngineConfig(device_wait=setting)) as e:
            for seq in range(1, 4):
                e.append("s", seq, text)
            got[setting] = e.embedding("s")
    assert torch.equal(torch.as_tensor(got["sleep"]), torch.as_tensor(got["spin"]))


def test_a_slot_uploads_every_dtype_and_shape_in_one_copy():
    """Slot.upload: one copy of the packed arrays, then a typed view each (empty and 2-D arrays included)."""
    import numpy as np

    slot = Slot()
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 9, 37), np.arange(5, dtype=np.int32), np.zeros(0, np.int64), rng.random((3, 7)),
              rng.integers(0, 9, 3), np.zeros((0, 7))]
    for _ in range(2):  # the second time into the buffer the first one grew
        out = slot.upload(arrays, torch.device("cuda"))
        slot.release().synchronize()
        for a, t in zip(arrays, out, strict=True):
            assert t.is_cuda and t.dtype == torch.from_numpy(a).dtype and tuple(t.shape) == a.shape
            assert np.array_equal(t.cpu().numpy(), a)
        arrays = [np.concatenate([a, a]) for a in arrays]
