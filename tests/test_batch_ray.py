"""The batch job on Ray Data (a local Ray on the CPU) writes the same rows as the local job."""

import os

import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from helpers_ray import start_local_ray  # noqa: E402
from test_batch import OPTIONS, assert_same_output, write_corpus  # noqa: E402

from streamret.batch import embed_parquet  # noqa: E402
from streamret.engine import Engine  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    start_local_ray(num_cpus=2)
    yield
    ray.shutdown()


def test_ray_data_path_equals_the_local_path_and_resumes(local_ray, tmp_path):
    ids = write_corpus(tmp_path / "corpus")
    os.remove(tmp_path / "corpus" / "c.parquet")  # Ray Data reads all files as one schema: no int64 text file
    ids.remove("wrong-type")
    engine = Engine.from_model("random:tiny", device="cpu")
    try:
        local = embed_parquet(str(tmp_path / "corpus"), str(tmp_path / "local"), engine=engine, **OPTIONS)
    finally:
        engine.shutdown(checkpoint=False)

    options = {k: v for k, v in OPTIONS.items() if k != "progress"}
    report = embed_parquet(str(tmp_path / "corpus"), str(tmp_path / "ray"), model="random:tiny", device="cpu",
                           ray=True, **options)
    assert (report.documents, report.errors, report.tokens) == (local.documents, local.errors, local.tokens)
    assert all(name.startswith("ray_") for name in os.listdir(tmp_path / "ray"))
    ray_rows = pq.read_table(tmp_path / "ray").sort_by("id")
    assert_same_output(ray_rows, pq.read_table(tmp_path / "local").sort_by("id"))
    assert sorted(ray_rows.column("id").to_pylist()) == sorted(ids)

    again = embed_parquet(str(tmp_path / "corpus"), str(tmp_path / "ray"), model="random:tiny", device="cpu",
                          ray=True, **options)
    assert (again.documents, again.skipped, again.parts) == (0, len(ids), 0)
