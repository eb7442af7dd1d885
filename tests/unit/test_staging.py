"""Staging layout and I/O on pathlib, file:// UPath, ObjectStoragePath-like and s3:// (moto)."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import time
import uuid

import pytest
from upath import UPath

from clio2sf import staging

pytestmark = pytest.mark.unit


@pytest.fixture(params=["pathlib", "upath-file"])
def root(request, tmp_path):
    base = tmp_path / "stage"
    return base if request.param == "pathlib" else UPath(f"file://{base}")


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(staging._os_path(path)).st_mode)


def test_layout_paths(root):
    m = staging.migration_root(root, "acme", "m1")
    assert str(staging.batch_path(m, "contacts", 3)).endswith("acme/m1/raw/contacts/batch-00003.jsonl.gz")
    assert str(staging.blob_path(m, 55, 7)).endswith("acme/m1/blobs/documents/55/7")
    assert staging.blob_relpath(55, 7) == "blobs/documents/55/7"


@pytest.mark.parametrize("bad", ["", "a/b", "..", "."])
def test_migration_root_rejects_non_segments(root, bad):
    with pytest.raises(ValueError, match="firm"):
        staging.migration_root(root, bad, "m1")


def test_batch_name_rejects_zero():
    with pytest.raises(ValueError, match=">= 1"):
        staging.batch_name(0)


def test_jsonl_gz_round_trip_checksum_and_permissions(root):
    m = staging.migration_root(root, "acme", "m1")
    path = staging.batch_path(m, "contacts", 1)
    recs = [{"id": i, "name": f"Ünïcode {i}"} for i in range(5)]
    entry = staging.write_jsonl_gz(path, recs)
    assert list(staging.read_jsonl_gz(path)) == recs
    raw = path.read_bytes()
    assert entry == {"file": "batch-00001.jsonl.gz", "records": 5, "bytes": len(raw),
                     "sha256": hashlib.sha256(raw).hexdigest()}
    assert gzip.decompress(raw).count(b"\n") == 5
    assert _mode(path) == 0o600
    for d in (path.parent, m, m.parent, root):
        assert _mode(d) == 0o700, d
    # Rewriting replaces (no append) and leaves no temporary files behind.
    staging.write_jsonl_gz(path, recs[:2])
    assert len(list(staging.read_jsonl_gz(path))) == 2
    assert [p.name for p in path.parent.iterdir()] == ["batch-00001.jsonl.gz"]


def test_equal_records_give_equal_bytes(root, monkeypatch):
    a = staging.write_jsonl_gz(root / "a.jsonl.gz", [{"x": 1}])
    later = time.time() + 100
    monkeypatch.setattr(gzip.time, "time", lambda: later)  # gzip would embed a different mtime
    b = staging.write_jsonl_gz(root / "b.jsonl.gz", [{"x": 1}])
    assert a["sha256"] == b["sha256"]


def test_staged_jsonl_is_gzip_whichever_library_compresses_it(root, monkeypatch):
    """Staged JSONL is compressed and read with zlib-ng's gzip when it is installed (requirements.txt), else the
    standard library's: either writes a file the other (and any gzip reader) reads back to the same bytes."""
    zlib_ng = pytest.importorskip("zlib_ng.gzip_ng")
    assert staging._gzip is zlib_ng
    recs = [{"i": i, "text": "x" * (i % 50), "é": None} for i in range(5_000)]
    files = {}
    for name, module in (("ng", zlib_ng), ("std", gzip)):
        monkeypatch.setattr(staging, "_gzip", module)
        files[name] = staging.write_jsonl_gz(root / f"{name}.jsonl.gz", recs, level=1)
        for other in (zlib_ng, gzip):
            monkeypatch.setattr(staging, "_gzip", other)
            assert list(staging.read_jsonl_gz(root / f"{name}.jsonl.gz")) == recs
    ng, std = (gzip.decompress((root / f"{n}.jsonl.gz").read_bytes()) for n in ("ng", "std"))
    assert ng == std and ng.count(b"\n") == len(recs)


def test_bad_jsonl_line_names_file_and_line(root):
    path = root / "bad.jsonl.gz"
    staging.write_bytes_atomic(path, gzip.compress(b'{"ok":1}\n{oops\n'))
    with pytest.raises(ValueError, match=r"bad.jsonl.gz: line 2"):
        list(staging.read_jsonl_gz(path))


def test_jsonl_values_are_json_values_even_where_msgspec_refuses(root):
    """read_jsonl_gz parses with msgspec and falls back to json for what msgspec refuses: the values
    read are json's (NaN stays NaN for the transform to reject, never a silent null)."""
    import json
    import math

    lines = [b'{"a":1,"b":[1.5,"x",null,true],"c":{"d":"\xc3\xa9"}}', b'{"n":NaN,"i":-Infinity}',
             b'{"big":123456789012345678901234567890}', b'{"s":"\\ud800"}', b'{"huge":1e400}', b"  ", b""]
    path = root / "odd.jsonl.gz"
    staging.write_bytes_atomic(path, gzip.compress(b"\n".join(lines) + b"\n"))
    got = list(staging.read_jsonl_gz(path))
    assert len(got) == 5
    assert got[0] == json.loads(lines[0]) and got[2] == json.loads(lines[2]) and got[3] == json.loads(lines[3])
    assert math.isnan(got[1]["n"]) and got[1]["i"] == -math.inf and got[4]["huge"] == math.inf


def test_jsonl_lines_across_read_blocks_round_trip(root, monkeypatch):
    """Lines that straddle the 1 MB blocks read and written come back whole, in order, numbered right."""
    monkeypatch.setattr(staging, "_CHUNK_BYTES", 64)
    recs = [{"id": i, "text": "é" * (i % 50)} for i in range(300)]
    path = root / "blocks.jsonl.gz"
    entry = staging.write_jsonl_gz(path, recs)
    assert entry["records"] == 300 and list(staging.read_jsonl_gz(path)) == recs
    staging.write_bytes_atomic(path, gzip.compress(b'{"id":1}\n' * 40 + b'{"id":\n'))
    with pytest.raises(ValueError, match=r"blocks.jsonl.gz: line 41"):
        list(staging.read_jsonl_gz(path))


def test_fast_encoded_lines_read_back_as_json_wrote_them(root):
    """Records ``fast`` accepts are written by msgspec, the rest by json: both read back the same values
    (a NaN it refuses stays NaN, never a silent null), and every line is valid for the reader."""
    import math

    from clio2sf import pipeline

    recs = [{"sobject": "Contact", "row": {"Name": "Zoë \u2028 \"q\" \\ \n", "N": 1.5, "I": 10**20, "B": True,
                                           "E": 1e16, "Z": None}, "natural_key": ["Name"]},
            {"sobject": "Contact", "row": {"Rate": math.nan}}, {"sobject": "Contact", "row": {"L": [1, math.inf]}}]
    assert [pipeline._scalar_finite_row(r) for r in recs] == [True, False, False]
    fast = root / "fast.jsonl.gz"
    staging.write_jsonl_gz(fast, recs, level=1, fast=pipeline._scalar_finite_row)
    back = list(staging.read_jsonl_gz(fast))
    assert back[0] == recs[0] and back[2]["row"]["L"][1] == math.inf and math.isnan(back[1]["row"]["Rate"])
    plain = root / "plain.jsonl.gz"
    staging.write_jsonl_gz(plain, recs[:1])
    assert list(staging.read_jsonl_gz(plain)) == back[:1]


def test_json_and_jsonl_helpers(root):
    p = root / "x" / "_progress.json"
    assert staging.read_json(p, default={"none": True}) == {"none": True}
    staging.write_json(p, {"next": "http://x?page_token=a", "batches": 2})
    assert staging.read_json(p) == {"next": "http://x?page_token=a", "batches": 2}
    log = root / "x" / "_batches.jsonl"
    staging.append_jsonl(log, [{"batch": 1}])
    staging.append_jsonl(log, [{"batch": 2}, {"batch": 3}])
    assert staging.read_jsonl(log) == [{"batch": 1}, {"batch": 2}, {"batch": 3}]
    assert _mode(log) == 0o600


def test_blob_streaming_and_zero_bytes(root):
    info = staging.write_blob(root / "b" / "1", [b"abc", b"", b"def"])
    assert info == {"sha256": hashlib.sha256(b"abcdef").hexdigest(), "size": 6}
    empty = staging.write_blob(root / "b" / "2", iter(()))
    assert empty == {"sha256": hashlib.sha256(b"").hexdigest(), "size": 0}
    assert (root / "b" / "2").exists() and (root / "b" / "2").read_bytes() == b""


def test_failed_blob_leaves_nothing(root):
    def chunks():
        yield b"partial"
        raise ConnectionError("dropped")

    with pytest.raises(ConnectionError):
        staging.write_blob(root / "b" / "3", chunks())
    assert not (root / "b" / "3").exists()
    assert list((root / "b").iterdir()) == []


def test_purge_older_than(root):
    old = staging.migration_root(root, "acme", "old")
    new = staging.migration_root(root, "acme", "new")
    staging.write_json(old / "raw" / "contacts" / "_progress.json", {})
    staging.write_json(new / "raw" / "contacts" / "_progress.json", {})
    week_ago = time.time() - 8 * 86400
    os.utime(staging._os_path(old / "raw" / "contacts" / "_progress.json"), (week_ago, week_ago))
    purged = staging.purge_older_than(root, 7)
    assert [p.rsplit("/", 1)[-1] for p in purged] == ["old"]
    assert not old.exists() and new.exists()
    assert staging.purge_older_than(root, 7) == []
    with pytest.raises(ValueError, match="days"):
        staging.purge_older_than(root, -1)


def _entry(n: int) -> dict:
    return {"file": staging.batch_name(n), "records": 1, "bytes": 10, "sha256": f"{n:064x}", "pages": 1}


def test_manifest_segments_hold_at_most_n_entries_and_read_back_whole(root):
    odir = staging.raw_dir(staging.migration_root(root, "acme", "m1"), "contacts")
    writer = staging.ManifestWriter(odir, "contacts", 0, segment_batches=3)
    for n in range(1, 8):
        writer.add(n, _entry(n))
        writer.write(n, complete=False)
        assert len(writer.entries) <= 3
    plain = staging.read_json(odir / staging.MANIFEST)
    assert "batches" not in plain and plain["batch_count"] == 7
    assert plain["segments"] == ["_manifest/part-00001.json", "_manifest/part-00002.json", "_manifest/part-00003.json"]
    assert [len(staging.read_json(odir / s)["batches"]) for s in plain["segments"]] == [3, 3, 1]
    got = staging.read_manifest(odir.parent.parent, "contacts")
    assert got["batches"] == [_entry(n) for n in range(1, 8)] and got["complete"] is False and got["records"] == 7
    writer.write(7, complete=True)
    # Complete: the plain file lists every batch too, for readers that do not use read_manifest.
    plain = staging.read_json(odir / staging.MANIFEST)
    assert plain["batches"] == [_entry(n) for n in range(1, 8)] and plain["complete"] is True
    assert staging.read_manifest(odir.parent.parent, "contacts") == plain
    assert _mode(odir / staging.MANIFEST) == 0o600


def test_manifest_resume_drops_uncommitted_entries_and_rolls_segments(root):
    odir = staging.raw_dir(staging.migration_root(root, "acme", "m1"), "contacts")
    writer = staging.ManifestWriter(odir, "contacts", 0, segment_batches=2)
    for n in range(1, 6):
        writer.add(n, _entry(n))
    writer.write(5, complete=False)  # killed before _progress.json said 5: only 4 are committed
    resumed = staging.ManifestWriter(odir, "contacts", 4, segment_batches=2)
    assert resumed.entries == [] and resumed.segment == 3
    resumed.add(5, {**_entry(5), "records": 2})
    resumed.add(6, _entry(6))
    resumed.write(7, complete=True)
    batches = staging.read_manifest(odir.parent.parent, "contacts")["batches"]
    assert [b["file"] for b in batches] == [staging.batch_name(n) for n in range(1, 7)]
    assert batches[4]["records"] == 2
    mid = staging.ManifestWriter(odir, "contacts", 3, segment_batches=2)
    assert mid.entries == [_entry(3)] and mid.segment == 2
    with pytest.raises(ValueError, match="expects batch 4, got 6"):
        mid.add(6, _entry(6))


def test_manifest_reader_truncates_to_batch_count(root):
    odir = staging.raw_dir(staging.migration_root(root, "acme", "m1"), "contacts")
    writer = staging.ManifestWriter(odir, "contacts", 0, segment_batches=4)
    writer.add(1, _entry(1))
    writer.write(1, complete=False)
    writer.add(2, _entry(2))  # segment rewritten, _manifest.json not yet: batch 2 is not listed
    assert staging.read_manifest(odir.parent.parent, "contacts")["batches"] == [_entry(1)]


def test_manifest_inline_form_is_read_and_converted_on_resume(root):
    odir = staging.raw_dir(staging.migration_root(root, "acme", "m1"), "contacts")
    staging.write_json(odir / staging.MANIFEST, {"object": "contacts", "batches": [_entry(1), _entry(2), _entry(3)],
                                                 "records": 3, "complete": False})
    assert len(staging.read_manifest(odir.parent.parent, "contacts")["batches"]) == 3
    writer = staging.ManifestWriter(odir, "contacts", 2, segment_batches=2)
    assert writer.entries == [] and (odir / "_manifest/part-00001.json").exists()
    writer.add(3, _entry(3))
    writer.write(3, complete=True)
    assert staging.read_manifest(odir.parent.parent, "contacts")["batches"] == [_entry(n) for n in (1, 2, 3)]


def test_manifest_inconsistent_with_progress_raises(root):
    odir = staging.raw_dir(staging.migration_root(root, "acme", "m1"), "contacts")
    with pytest.raises(ValueError, match="contacts: progress has 2 committed batches"):
        staging.ManifestWriter(odir, "contacts", 2)
    staging.write_json(odir / "_manifest/part-00001.json", {"batches": [_entry(1)]})
    with pytest.raises(ValueError, match="part-00001.json holds 1 batches, progress needs 2"):
        staging.ManifestWriter(odir, "contacts", 2)
    staging.write_json(odir / staging.MANIFEST, {"object": "contacts", "batch_count": 2, "records": 2,
                                                 "complete": False, "segments": ["_manifest/part-00001.json"]})
    with pytest.raises(ValueError, match="lists 2 batches but its segments hold 1"):
        staging.read_manifest(odir.parent.parent, "contacts")
    with pytest.raises(ValueError, match="segment_batches"):
        staging.ManifestWriter(odir, "contacts", 0, segment_batches=0)


def test_works_with_airflow_object_storage_path(tmp_path):
    from airflow.sdk import ObjectStoragePath

    m = staging.migration_root(ObjectStoragePath(f"file://{tmp_path}"), "acme", "m1")
    path = staging.batch_path(m, "matters", 1)
    staging.write_jsonl_gz(path, [{"id": 7}])
    assert list(staging.read_jsonl_gz(path)) == [{"id": 7}]
    assert _mode(path) == 0o600


@pytest.mark.integration
def test_s3_round_trip(s3_root):
    m = staging.migration_root(s3_root, "acme", "m1")
    path = staging.batch_path(m, "contacts", 1)
    entry = staging.write_jsonl_gz(path, [{"id": 1}, {"id": 2}])
    assert entry["records"] == 2
    assert list(staging.read_jsonl_gz(path)) == [{"id": 1}, {"id": 2}]
    staging.write_json(staging.raw_dir(m, "contacts") / "_progress.json", {"batches": 1})
    assert staging.read_progress(m, "contacts") == {"batches": 1}
    staging.append_jsonl(m / "log.jsonl", [{"a": 1}])
    staging.append_jsonl(m / "log.jsonl", [{"a": 2}])
    assert staging.read_jsonl(m / "log.jsonl") == [{"a": 1}, {"a": 2}]
    assert staging.write_blob(staging.blob_path(m, 5, 9), [b"x" * 10]) == {
        "sha256": hashlib.sha256(b"x" * 10).hexdigest(), "size": 10}
    assert sorted(p.name for p in staging.raw_dir(m, "contacts").iterdir()) == ["_progress.json", "batch-00001.jsonl.gz"]
    assert staging.purge_older_than(s3_root, 1, now=time.time() + 2 * 86400) == [str(m)]
    assert not path.exists()


@pytest.fixture
def s3_root(monkeypatch):
    """A bucket on a moto server (port 0: a free port) as an ``s3://`` UPath."""
    from moto.server import ThreadedMotoServer

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    opts = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing"}
    try:
        import s3fs

        bucket = f"staging-{uuid.uuid4().hex[:12]}"  # moto's backend is process-wide

        s3fs.S3FileSystem.clear_instance_cache()
        s3fs.S3FileSystem(**opts).mkdir(bucket)
        yield UPath(f"s3://{bucket}/root", client_kwargs={"endpoint_url": opts["endpoint_url"]},
                    key="testing", secret="testing")
    finally:
        server.stop()


def test_a_row_msgspec_may_write_is_one_of_scalars_and_finite_floats():
    """pipeline._scalar_finite_row checks the floats of a row in C: the answer is the value-by-value one."""
    import itertools
    import math

    from clio2sf import pipeline

    class Sub(float):
        pass

    def by_value(row):
        return all(type(v) in (str, int, bool, type(None)) or (type(v) is float and math.isfinite(v)) for v in row.values())

    values = [1.5, -0.0, 1e308, math.nan, -math.nan, math.inf, -math.inf, 3, True, None, "nan", Sub(2.0), [1.0], {"x": 1}]
    rows = [dict(enumerate(c)) for n in range(4) for c in itertools.combinations(values, n)]
    assert sum(map(by_value, rows)) > 50 and sum(not by_value(r) for r in rows) > 50
    assert [pipeline._scalar_finite_row({"row": r}) for r in rows] == [by_value(r) for r in rows]


def test_lines_compressed_as_they_come_give_the_file_of_all_the_lines(root):
    """LinesGz (a file's lines compressed 1 MB at a time while they come) writes the bytes gzip_lines and
    write_lines_gz give for the same lines, whenever it is flushed: empty lines, lines over a chunk, totals
    just under, at and over a chunk boundary, no line at all."""
    import random

    rnd = random.Random(20)
    chunk = staging._CHUNK_BYTES
    cases = [[], [b""], [b"x" * (chunk - 1)], [b"x" * chunk], [b"x" * chunk, b""], [b"y" * (chunk + 5), b"z"],
             [b"a" * (chunk // 2)] * 2 + [b"b"], [b""] * 5000]
    for _ in range(12):
        size = rnd.choice([10, 300, 5_000, 200_000])
        cases.append([bytes([97 + rnd.randrange(26)]) * rnd.randrange(size) for _ in range(rnd.randrange(1, 60))])
    for i, lines in enumerate(cases):
        for level in (1, 6):
            want = staging.gzip_lines(lines, level)
            file = staging.LinesGz(level)
            for n, line in enumerate(lines, 1):
                file.lines.append(line)
                if rnd.random() < 0.3:
                    file.flush()
                    assert sum(map(len, file.lines)) < chunk  # what is left waits for more lines
                assert len(file) == n
            got = file.write(root / f"case-{i}-{level}.jsonl.gz")
            assert (root / f"case-{i}-{level}.jsonl.gz").read_bytes() == want, (i, level)
            assert got == staging.write_lines_gz(root / f"ref-{i}-{level}.jsonl.gz", lines, level) | {"file": got["file"]}
            assert got["records"] == len(lines) == len(file)
