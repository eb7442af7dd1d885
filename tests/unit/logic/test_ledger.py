"""Run ledger: write once per batch, read back across runs, helper views; local and S3."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from clio2sf.ledger import LedgerWriter, created_ids, last_write_by_record, read_ledger, updated_with_before


def _write_two_runs(root) -> list:
    paths = []
    with LedgerWriter(root, "m1", "run-a", "full_load", "Contact", "batch-00001") as w:
        w.record(source_system_id="contact-1", sf_id="003A1", operation="upsert", created=True,
                 at="2026-11-28T09:00:00Z")
        w.record(source_system_id="contact-2", sf_id="003A2", operation="upsert", created=False,
                 before={"LastName": "Old", "Email": None}, at="2026-11-28T09:00:01Z")
        w.record(source_system_id="contact-3", sf_id=None, operation="upsert", created=False,
                 status="failed", error="REQUIRED_FIELD_MISSING: LastName", at="2026-11-28T09:00:02Z")
    paths.append(w.path)
    with LedgerWriter(root, "m1", "run-a", "full_load", "ContentVersion", "batch-00001") as w:
        w.record(source_system_id="document-5@v1", sf_id="068V1", operation="insert", created=True,
                 file_ids=["069D1"], at="2026-11-28T09:01:00Z")
    paths.append(w.path)
    with LedgerWriter(root, "m1", "run-b", "delta", "Contact", "batch-00001") as w:
        w.record(source_system_id="contact-1", sf_id="003A1", operation="upsert", created=False,
                 before={"LastName": "Doe"}, at="2026-11-29T10:00:00Z")
    paths.append(w.path)
    return paths


def _check(root) -> None:
    paths = _write_two_runs(root)
    assert str(paths[0]).endswith("ledger/run-a/full_load/Contact/batch-00001.jsonl")
    df = read_ledger(root)
    assert len(df) == 5
    assert set(df["run_id"]) == {"run-a", "run-b"}
    assert str(df["at"].dt.tz) == "UTC"
    run_a = read_ledger(root, run_id="run-a")
    assert len(run_a) == 4
    assert created_ids(run_a) == {"Contact": ["003A1"], "ContentVersion": ["068V1"]}
    upd = updated_with_before(run_a)
    assert upd[["object", "sf_id"]].values.tolist() == [["Contact", "003A2"]]
    assert upd.iloc[0]["before"] == {"LastName": "Old", "Email": None}
    last = last_write_by_record(df).set_index("source_system_id")
    assert last.loc["contact-1", "run_id"] == "run-b"  # the later delta write wins
    assert "contact-3" not in last.index  # failed attempts are not writes
    assert read_ledger(root, phase="delta")["source_system_id"].tolist() == ["contact-1"]


@pytest.mark.unit
def test_round_trip_local(tmp_path: Path):
    _check(tmp_path / "firm" / "m1")


@pytest.mark.unit
def test_retried_batch_overwrites_its_own_file(tmp_path: Path):
    for attempt in range(2):
        with LedgerWriter(tmp_path, "m1", "r", "full_load", "Case", "batch-00001") as w:
            w.record(source_system_id="matter-7", sf_id="500X", operation="upsert", created=attempt == 0)
    df = read_ledger(tmp_path)
    assert len(df) == 1 and not df.iloc[0]["created"]


@pytest.mark.unit
def test_written_even_when_the_block_raises(tmp_path: Path):
    with pytest.raises(RuntimeError), LedgerWriter(tmp_path, "m1", "r", "full_load", "Case", "b1") as w:
        w.record(source_system_id="matter-7", sf_id="500X", operation="insert", created=True)
        raise RuntimeError("bulk job died")
    assert read_ledger(tmp_path)["sf_id"].tolist() == ["500X"]


@pytest.mark.unit
def test_bad_input_names_the_record(tmp_path: Path):
    w = LedgerWriter(tmp_path, "m1", "r", "full_load", "Case", "b1")
    with pytest.raises(ValueError, match="matter-7.*status"):
        w.record(source_system_id="matter-7", sf_id="500X", operation="insert", created=True, status="done")
    with pytest.raises(ValueError, match="matter-8.*sf_id"):
        w.record(source_system_id="matter-8", sf_id=None, operation="insert", created=True)
    with pytest.raises(ValueError, match="path segment"):
        LedgerWriter(tmp_path, "m1", "../x", "full_load", "Case", "b1")
    (tmp_path / "ledger" / "r" / "p" / "Case").mkdir(parents=True)
    (tmp_path / "ledger" / "r" / "p" / "Case" / "b.jsonl").write_text('{"run_id": "r"}\nnot json\n')
    with pytest.raises(ValueError, match="line 1 lacks"):
        read_ledger(tmp_path)


@pytest.mark.unit
def test_empty_ledger(tmp_path: Path):
    df = read_ledger(tmp_path)
    assert df.empty and "sf_id" in df.columns
    assert created_ids(df) == {}
    assert last_write_by_record(df).empty


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_root(monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    upath = pytest.importorskip("upath")
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_SESSION_TOKEN": "testing"}.items():
        monkeypatch.setenv(k, v)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="staging")
        yield upath.UPath("s3://staging/firm/m1", endpoint_url=endpoint, key="testing", secret="testing")
    finally:
        server.stop()
        os.environ.pop("AWS_SESSION_TOKEN", None)


@pytest.mark.integration
def test_round_trip_s3(s3_root):
    _check(s3_root)


# --------------------------------------------------------------------------- look-ups through the index


def _check_index(root) -> None:
    from clio2sf import ledger_index
    from clio2sf.ledger import BatchJournal

    _write_two_runs(root)
    with LedgerWriter(root, "m1", "run-b", "delta", "Contact", "batch-00002") as w:  # no ok line: no index row
        w.record(source_system_id="contact-9", sf_id=None, operation="upsert", created=False, status="failed",
                 error="X")
    twin = ledger_index.index_path(root, "run-a", "full_load", "Contact", "batch-00001")
    assert twin.exists()
    import io

    import pyarrow.parquet as pq
    with twin.open("rb") as fh:
        t = pq.read_table(io.BytesIO(fh.read()))
    # only successful writes, only the look-up columns: before-images (client data) stay in the ledger only
    assert sorted(t["source_system_id"].to_pylist()) == ["contact-1", "contact-2"]
    assert tuple(t.column_names) == ledger_index.COLUMNS

    # the same answer as the whole-ledger view, for the asked ids only
    last = last_write_by_record(read_ledger(root))
    expect = {r.source_system_id: r.sf_id for r in last[last["object"] == "Contact"].itertuples()}
    assert ledger_index.latest_sf_ids(root, "Contact", ["contact-1", "contact-2", "contact-3", "contact-404"]) == expect
    assert ledger_index.latest_sf_ids(root, "Contact", ["contact-2"]) == {"contact-2": "003A2"}
    assert ledger_index.latest(ledger_index.by_source_ids(root, "Contact", ["contact-1"]))["run_id"].to_pylist() == ["run-b"]
    assert ledger_index.latest_sf_ids(root, "Contact", []) == {}

    # journals are indexed while they exist; a batch's own lines and journals are not "others"
    journal = BatchJournal(root, "m1", "run-c", "full_load", "Contact", "batch-00007")

    class Ok:
        success, created, operation, file_ids = True, True, "upsert", ()

        def __init__(self, sid, sf):
            self.source_system_id, self.sf_id = sid, sf

    journal.done([Ok("contact-7", "003C70000000001AAA")])
    assert ledger_index.latest_sf_ids(root, "Contact", ["contact-7"]) == {"contact-7": "003C70000000001AAA"}
    assert ledger_index.sf_ids_written_by_others(root, "Contact", {"003C70000000001", "003A1"},
                                                 exclude=("run-c", "full_load", "batch-00007")) == {"003A1"}
    assert ledger_index.sf_ids_written_by_others(root, "Contact", {"003C70000000001"},
                                                 exclude=("run-c", "full_load", "batch-00008")) == {"003C70000000001"}
    journal.clear()
    assert ledger_index.latest_sf_ids(root, "Contact", ["contact-7"]) == {}
    assert not list(ledger_index._children(root / "ledger_index" / "Contact" / "run-c" / "full_load"))


@pytest.mark.unit
def test_index_look_ups_local(tmp_path: Path):
    _check_index(tmp_path / "firm" / "m1")


@pytest.mark.integration
def test_index_look_ups_s3(s3_root):
    _check_index(s3_root)


@pytest.mark.unit
def test_index_falls_back_to_the_ledger_file_and_ignores_orphan_twins(tmp_path: Path):
    from clio2sf import ledger_index

    with LedgerWriter(tmp_path, "m1", "r", "full_load", "Case", "b1") as w:
        w.record(source_system_id="matter-7", sf_id="500X", operation="upsert", created=True)
    ledger_index.index_path(tmp_path, "r", "full_load", "Case", "b1").unlink()  # e.g. a ledger from before the index
    assert ledger_index.latest_sf_ids(tmp_path, "Case", ["matter-7"]) == {"matter-7": "500X"}
    with LedgerWriter(tmp_path, "m1", "r", "full_load", "Case", "b2") as w:
        w.record(source_system_id="matter-8", sf_id="500Y", operation="upsert", created=True)
    w.path.unlink()  # the ledger file is the truth: a twin alone says nothing
    assert ledger_index.latest_sf_ids(tmp_path, "Case", ["matter-8"]) == {}


def _mixed_ledger(root) -> None:
    """Several runs and objects: versions (``@v2``), link rows (``#``), a delete, a rollback, a journal,
    ties in ``at`` and a failed line: what the delta and reconcile look-ups must see as the whole ledger does."""
    from clio2sf.ledger import BatchJournal

    _write_two_runs(root)
    with LedgerWriter(root, "m1", "run-a", "full_load", "ContentVersion", "batch-00002") as w:
        w.record(source_system_id="document-5@v2", sf_id="068V2", operation="insert", created=True,
                 at="2026-11-28T09:01:00Z")
        w.record(source_system_id="document-5#matter-1", sf_id="06AL1", operation="insert", created=True,
                 at="2026-11-28T09:01:00Z")
    with LedgerWriter(root, "m1", "run-c", "delta", "Contact", "deletes-00001") as w:
        w.record(source_system_id="contact-2", sf_id="003A2", operation="delete", created=False,
                 before={"LastName": "New"}, at="2026-11-30T08:00:00Z")
        w.record(source_system_id="contact-4", sf_id=None, operation="delete", created=False, status="failed",
                 error="X", at="2026-11-30T08:00:00Z")
    with LedgerWriter(root, "m1", "run-b", "rollback", "Contact", "rollback-1") as w:  # rolled back: not ours now
        w.record(source_system_id="contact-1", sf_id="003A1", operation="restore", created=False,
                 at="2026-11-30T09:00:00Z")
    with LedgerWriter(root, "m1", "run-d", "delta", "Case", "batch-00001") as w:  # same at, two records
        w.record(source_system_id="matter-1", sf_id="500M1", operation="upsert", created=True,
                 at="2026-11-30T10:00:00Z")
        w.record(source_system_id="matter-2", sf_id="500M2", operation="upsert", created=True,
                 at="2026-11-30T10:00:00Z")

    class Ok:
        success, created, operation, file_ids = True, True, "upsert", ()
        source_system_id, sf_id = "matter-3", "500M3"

    BatchJournal(root, "m1", "run-e", "full_load", "Case", "batch-00009").done([Ok()])  # a worker killed mid-batch


@pytest.mark.unit
def test_delta_look_up_through_the_index_matches_the_whole_ledger(tmp_path: Path):
    from clio2sf.delta_run import already_deleted, our_last_writes
    from clio2sf.verify import base_id, is_primary

    _mixed_ledger(tmp_path)
    whole = last_write_by_record(read_ledger(tmp_path))
    cols = ["object", "source_system_id", "sf_id", "at", "run_id", "phase", "operation"]
    for exact, records in [({"contact-2", "contact-4", "matter-3"}, {"document-5", "matter-1", "contact-1"}),
                           (set(), {"document-5"}), ({"matter-2"}, set()), ({"nobody-1"}, {"nobody-2"})]:
        expect = [tuple(r) for r in whole[cols].itertuples(index=False)
                  if r.source_system_id in exact or (base_id(r.source_system_id) in records
                                                     and is_primary(r.source_system_id))]
        got = [(w.object, w.source_system_id, w.sf_id, w.at, w.run_id, w.phase, w.operation)
               for w in our_last_writes(tmp_path, source_ids=exact, primary_of=records)]
        assert got == expect, (exact, records)
    assert already_deleted(our_last_writes(tmp_path, source_ids={"contact-2", "contact-1"})) == {"contact-2"}
    assert already_deleted(whole) == {"contact-2"}  # the same answer from the whole ledger
    # the link row and the versions are found for document-5; a link row is never a primary match
    got = {w.source_system_id for w in our_last_writes(tmp_path, primary_of={"document-5"})}
    assert got == {"document-5@v1", "document-5@v2"}


@pytest.mark.unit
def test_reconcile_look_up_through_the_index_matches_the_whole_ledger(tmp_path: Path):
    from clio2sf.verify.reconciliation import _ledger_ids

    _mixed_ledger(tmp_path)
    whole = last_write_by_record(read_ledger(tmp_path))
    whole = whole[whole["phase"] != "rollback"]
    for sobject, asked in [("Contact", {"contact-1", "contact-2", "contact-3"}),
                           ("Case", {"matter-1", "matter-2", "matter-3", "matter-9"}),
                           ("ContentVersion", {"document-5@v1", "document-5#matter-1"})]:
        rows = whole[whole["object"] == sobject]
        expect = {str(s): str(i) for s, i in zip(rows["source_system_id"], rows["sf_id"], strict=True)
                  if str(s) in asked}
        got = _ledger_ids(tmp_path, sobject, asked)
        assert got == expect and list(got) == list(expect), sobject
    assert "contact-1" not in _ledger_ids(tmp_path, "Contact", {"contact-1"})  # its last write was a rollback's


@pytest.mark.unit
def test_count_ok_counts_successful_writes_from_twins_or_ledger_files(tmp_path: Path):
    from clio2sf import ledger_index

    with LedgerWriter(tmp_path, "m1", "r", "full_load", "Case", "b1") as w:
        w.record(source_system_id="matter-7", sf_id="500X", operation="upsert", created=True)
        w.record(source_system_id="matter-8", sf_id=None, operation="upsert", created=False, status="failed", error="X")
    with LedgerWriter(tmp_path, "m1", "r2", "sample", "Case", "b1") as w:
        w.record(source_system_id="matter-9", sf_id="500Z", operation="upsert", created=True)
        w.record(source_system_id="matter-7", sf_id="500X", operation="upsert", created=False)
    ledger_index.index_path(tmp_path, "r2", "sample", "Case", "b1").unlink()  # no twin: the ledger file's lines
    assert ledger_index.count_ok(tmp_path, "Case") == 3
    assert ledger_index.count_ok(tmp_path, "Contact") == 0
    assert ledger_index.count_ok(tmp_path, "Case", stop_above=0) >= 1


@pytest.mark.unit
def test_a_batch_journal_keeps_what_the_first_attempt_saw_before_writing(tmp_path: Path):
    """A delta batch's retry after its worker died past the upsert (or after it completed: its ledger file) ledgers
    the before-images from before the first attempt, and a Contact batch's relations as the first attempt saw them.
    Old code: the retry's before-images were what the dead attempt had written (a rollback restored nothing)."""
    from clio2sf import pipeline
    from clio2sf.ledger import BatchJournal

    root = tmp_path / "firm" / "m1"
    args = (root, "m1", "w1", "delta", "Contact", "contacts-batch-00001")
    first = BatchJournal(*args)
    no_ledger = LedgerWriter(*args).path
    seen = pipeline.earliest_images({"contact-1": {"Id": "003A00000000001AAA", "AccountId": "001X"}},
                                    journal=first, earlier=lambda: pipeline.earlier_before_images(no_ledger))
    assert seen == {"contact-1": {"Id": "003A00000000001AAA", "AccountId": "001X"}}
    assert first.remember("relation_before", {"contact-1": {"ids": ["07kX"]}, "contact-2": {"ids": []}}) == {
        "contact-1": {"ids": ["07kX"]}, "contact-2": {"ids": []}}
    # the worker dies after the upsert: the retry sees the Contact under Y, Salesforce's new relation, a new row
    retry = BatchJournal(*args)
    images = {"contact-1": {"Id": "003A00000000001AAA", "AccountId": "001Y"},
              "contact-3": {"Id": "003A00000000003AAA", "AccountId": None}}
    assert pipeline.earliest_images(images, journal=retry, earlier=lambda: pipeline.earlier_before_images(no_ledger)) == {
        "contact-1": {"Id": "003A00000000001AAA", "AccountId": "001X"},
        "contact-3": {"Id": "003A00000000003AAA", "AccountId": None}}
    assert retry.remember("relation_before", {"contact-1": {"ids": ["07kX", "07kY"]}, "contact-2": {"ids": ["07kZ"]}}) == {
        "contact-1": {"ids": ["07kX"]}, "contact-2": {"ids": []}}
    assert not any(retry.intended.values()) and not retry.intended  # what it saw is not a write it meant
    # nothing of it is a write: no look-up, no rollback reads it
    assert not len(read_ledger(root).query("status == 'ok'"))
    retry.clear()
    # a batch that completed, run again by a retried task: its ledger file's before-images come first
    with LedgerWriter(*args) as w:
        w.record(source_system_id="contact-1", sf_id="003A00000000001AAA", operation="upsert", created=False,
                 before={"Id": "003A00000000001AAA", "AccountId": "001X"})
    again = BatchJournal(*args)
    assert pipeline.earliest_images(images, journal=again, earlier=lambda: pipeline.earlier_before_images(no_ledger))[
        "contact-1"]["AccountId"] == "001X"
