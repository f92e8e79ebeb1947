"""How the step thread waits for the GPU (EngineConfig.device_wait): the setting reaches the runner's staging,
and a bad value is named. On a GPU, tests/gpu/test_device_wait_gpu.py checks the waits themselves."""

import pytest

from streamret.engine import Engine, EngineConfig
from streamret.engine.staging import Staging


def test_sleep_is_the_default():
    # the step threads' spin took cores the host needed (bench/RESULTS.md, session 31)
    assert EngineConfig().device_wait == "sleep"
    assert not any(slot.blocking for slot in Staging().slots)  # (the staging's own default: the engine says)
    assert all(slot.blocking for slot in Staging(blocking=True).slots)


@pytest.mark.parametrize("setting, blocking", [("sleep", True), ("spin", False)])
def test_the_setting_reaches_the_step_staging(setting, blocking):
    with Engine.from_model("random:tiny", device="cpu", config=EngineConfig(device_wait=setting)) as e:
        assert [slot.blocking for slot in e.runner.staging.slots] == [blocking] * len(e.runner.staging.slots)
        e.append("s", 1, b"Hello there. A second sentence follows.")
        assert e.info("s").applied_seq == 1


@pytest.mark.parametrize("bad", ["block", "", None, True])
def test_a_bad_setting_is_named(bad):
    with pytest.raises(ValueError, match=f"device_wait={bad!r}; use one of \\('sleep', 'spin'\\)"):
        EngineConfig(device_wait=bad)
