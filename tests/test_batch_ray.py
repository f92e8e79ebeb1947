"""The batch job on Ray Data (a local Ray on the CPU) writes the same rows as the local job."""

import os
import re

import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from helpers_ray import start_local_ray  # noqa: E402
from test_batch import OPTIONS, assert_same_output, write_corpus  # noqa: E402

from streamret.batch import embed_parquet  # noqa: E402
from streamret.batch.corpus import Corpus  # noqa: E402
from streamret.batch.ray_job import rows_per_batch  # noqa: E402
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

    # blocks and batches of about 16 KiB of text: several of each, even in this small corpus
    options = {**{k: v for k, v in OPTIONS.items() if k != "progress"}, "bytes_per_part": 16 << 10}
    report = embed_parquet(str(tmp_path / "corpus"), str(tmp_path / "ray"), model="random:tiny", device="cpu",
                           ray=True, **options)
    assert (report.documents, report.errors, report.tokens) == (local.documents, local.errors, local.tokens)
    assert all(name.startswith("ray_") for name in os.listdir(tmp_path / "ray"))
    ray_rows = pq.read_table(tmp_path / "ray").sort_by("id")
    assert_same_output(ray_rows, pq.read_table(tmp_path / "local").sort_by("id"))
    assert sorted(ray_rows.column("id").to_pylist()) == sorted(ids)

    # batches of at most rows_per_part rows, two at once in the actor: still the local job's rows
    assert int(re.search(r"; (\d+) batches;", report.detail).group(1)) >= -(-len(ids) // options["rows_per_part"])
    assert 0 < report.seconds < report.total_seconds  # from the actor's model ready; Ray's and the actor's start
    assert "Ray: 1 engine actor, the first ready" in report.detail and "; engine: " in report.detail

    again = embed_parquet(str(tmp_path / "corpus"), str(tmp_path / "ray"), model="random:tiny", device="cpu",
                          ray=True, **options)
    assert (again.documents, again.skipped, again.parts) == (0, len(ids), 0)

    # a run cut short keeps the files it wrote (several: written as the batches came): a rerun embeds the rest
    files = sorted(os.listdir(tmp_path / "ray"))
    assert len(files) > 1
    lost = pq.read_table(tmp_path / "ray" / files[0]).num_rows
    os.remove(tmp_path / "ray" / files[0])
    resumed = embed_parquet(str(tmp_path / "corpus"), str(tmp_path / "ray"), model="random:tiny", device="cpu",
                            ray=True, **options)
    assert (resumed.documents, resumed.skipped) == (lost, len(ids) - lost)
    assert_same_output(pq.read_table(tmp_path / "ray").sort_by("id"), pq.read_table(tmp_path / "local").sort_by("id"))


def test_a_batch_holds_about_one_part_of_text(tmp_path):
    texts = ["x" * 1000] * 30 + ["y" * 3000] * 10  # 60,000 bytes in 40 rows: 1,500 per row
    # plain values without min/max statistics in the page headers: the footers' uncompressed size is the text's
    # (plus 4 bytes a value), whatever the compression
    pq.write_table(pa.table({"id": list(range(40)), "text": texts}), tmp_path / "c.parquet", row_group_size=7,
                   use_dictionary=False, write_statistics=False, compression="zstd")
    corpus = Corpus(str(tmp_path / "c.parquet"))
    assert rows_per_batch(corpus, bytes_per_part=15_000, rows_per_part=1024) in (9, 10)  # ~15,000 / 1,500
    assert rows_per_batch(corpus, bytes_per_part=15_000, rows_per_part=4) == 4
    assert rows_per_batch(corpus, bytes_per_part=100, rows_per_part=1024) == 1  # a document larger than a part
