"""Final validation against source totals: counts, duplicates and money, per object.

Source figures are streamed from staged envelopes (:func:`source_totals`); target figures
come from the DAG (SOQL aggregates or streamed query results, see :class:`TargetTotals`).
``missing = expected - loaded - rejected`` must be 0 and no Clio id may appear twice.
"""

from __future__ import annotations

import heapq
import operator
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from itertools import chain, groupby, islice, repeat
from typing import Any

from clio2sf import reports
from clio2sf.labels import readable

Envelope = dict[str, Any]
ZERO = Decimal(0)


def _dec(value: Any, where: str) -> Decimal:
    if value is None:
        return ZERO
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{where}: {value!r} is not a number") from None


def base_source_id(external_id: str) -> str:
    """``calendar_entry-40@20240301T150000Z`` → ``calendar_entry-40`` (occurrences, versions)."""
    return external_id.split("@", 1)[0]


#: Values sorted at once by :func:`sorted_unique` and :func:`repeated` (a list of Python ints that long is
#: the transient: about 40 bytes a value).
RUN = 16_384


def _merged_runs(values: array) -> Iterator[int]:
    """``values`` in order: sorted in place in runs of :data:`RUN` (no copy of the array), the runs merged
    (read through views of the array: it must not grow until the merge is read to its end)."""
    starts = range(0, len(values), RUN)
    for i in starts:
        values[i:i + RUN] = array("q", sorted(values[i:i + RUN]))
    view = memoryview(values)
    return heapq.merge(*(view[i:i + RUN] for i in starts))


def increasing(values: array) -> bool:
    """Each value above the one before (sorted, no repeats)."""
    return all(map(operator.lt, values, islice(values, 1, None)))


#: Numbers read from an id file at a time (what a run being merged holds in memory: 32 KB).
BLOCK = 4_096


class _File:
    """A file of a :class:`NumberRuns` or :class:`NumberFile` in a :class:`reports.SpillFolder`, removed when
    nothing refers to it (the folder itself goes with the reconciliation)."""

    def __init__(self, folder: reports.SpillFolder) -> None:
        import os
        import tempfile
        import weakref

        fd, self.path = tempfile.mkstemp(suffix=".ids", dir=folder.path)
        os.close(fd)
        self.folder = folder  # the folder outlives its files
        weakref.finalize(self, _unlink, self.path)

    def read(self, start: int, count: int) -> Iterator[array]:
        """``count`` numbers from number ``start``, a block (:data:`BLOCK`) at a time."""
        with open(self.path, "rb") as f:
            f.seek(start * 8)
            while count > 0:
                block = array("q")
                block.frombytes(f.read(min(count, BLOCK) * 8))
                if not block:
                    return
                count -= len(block)
                yield block


def _unlink(path: str) -> None:
    import os

    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class NumberFile:
    """int64 numbers, sorted without repeats, in a file: a sorted array to its readers (``len``, iteration a
    block at a time, ``in`` through one block, ``==``), never held whole in memory (an object's ids at 1M
    records: 450,000 numbers, 3.6 MB)."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, file: _File, count: int) -> None:
        self.file, self.count = file, count
        self._index: array | None = None  # the first number of each block, read on the first ``in``
        self._block: tuple[int, array] | None = None  # the last block ``in`` read

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[int]:
        for block in self.file.read(0, self.count):
            yield from block

    def __contains__(self, n: object) -> bool:
        if not isinstance(n, int) or not self.count:
            return False
        if self._index is None:
            self._index = array("q", (next(self.file.read(i, 1))[0] for i in range(0, self.count, BLOCK)))
        b = bisect_right(self._index, n) - 1
        if b < 0:
            return False
        if self._block is None or self._block[0] != b:
            self._block = (b, next(self.file.read(b * BLOCK, BLOCK)))
        block = self._block[1]
        i = bisect_left(block, n)
        return i < len(block) and block[i] == n

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NumberFile | array):
            return len(self) == len(other) and all(map(operator.eq, self, other))
        return NotImplemented


class NumberRuns:
    """int64 numbers appended in any order, kept in a file as sorted runs (each at most :data:`RUN` numbers
    sorted at once; a run that follows on from the one before extends it): in memory only the run being
    filled. Read back merged (:meth:`merged`, :meth:`counted`), or as a :class:`NumberFile` (:meth:`unique`,
    the file itself when the numbers came in increasing order). Fewer than :data:`RUN` numbers stay in
    memory, no file made."""

    def __init__(self, folder: reports.SpillFolder) -> None:
        self.folder = folder
        self.file: _File | None = None
        self._out: Any = None
        self._buf = array("q")
        self._runs: list[list[int]] = []  # [start, count] of each sorted run in the file
        self._written = 0
        self._last: int | None = None
        self._strict = True  # every number written above the one before

    def __len__(self) -> int:
        return self._written + len(self._buf)

    @property
    def strict(self) -> bool:
        """Every number appended above the one before (in increasing order, no repeats)."""
        buf = self._buf
        return self._strict and increasing(buf) and not (buf and self._last is not None and buf[0] <= self._last)

    def append(self, n: int) -> None:
        self._buf.append(n)
        if len(self._buf) >= RUN:
            self._flush()

    def _flush(self) -> None:
        buf, self._buf = self._buf, array("q")
        if not buf:
            return
        if not increasing(buf):
            self._strict = False
            buf = array("q", sorted(buf))
        if self._runs and buf[0] >= self._last:  # type: ignore[operator]
            self._strict = self._strict and buf[0] > self._last  # type: ignore[operator]
            self._runs[-1][1] += len(buf)
        else:
            self._strict = self._strict and not self._runs
            self._runs.append([self._written, len(buf)])
        if self.file is None:
            self.file = _File(self.folder)
            self._out = open(self.file.path, "wb")  # noqa: SIM115 (closed by _close)
        buf.tofile(self._out)
        self._written += len(buf)
        self._last = buf[-1]

    def _close(self) -> None:
        if self.file is not None:
            self._flush()
            if self._out is not None:
                self._out.close()
                self._out = None

    def merged(self) -> Iterator[int]:
        """Every number appended, in order (repeats included)."""
        if self.file is None:
            return iter(sorted(self._buf))
        self._close()
        file = self.file
        runs = [(b for block in file.read(start, count) for b in block) for start, count in self._runs]
        return runs[0] if len(runs) == 1 else heapq.merge(*runs)

    def counted(self) -> Iterator[tuple[int, int]]:
        """Each number once, in order, with how many times it was appended."""
        return _counted_sorted(self.merged())

    def unique(self) -> array | NumberFile:
        """The numbers sorted without repeats: an array when no file was made, else a :class:`NumberFile`
        (this one's file when they came in increasing order, else a new one written as merged)."""
        if self.file is None:
            return sorted_unique(self._buf)
        self._close()
        if self._strict:
            return NumberFile(self.file, self._written)
        out = _Writer(self.folder)
        last = None
        for v in self.merged():
            if v != last:
                out.append(v)
                last = v
        return out.done()


class _Writer:
    """Numbers appended in order written to a new :class:`NumberFile` a block at a time."""

    def __init__(self, folder: reports.SpillFolder) -> None:
        self.file = _File(folder)
        self._out = open(self.file.path, "wb")  # noqa: SIM115 (closed by done)
        self._buf = array("q")
        self.count = 0

    def append(self, n: int) -> None:
        self._buf.append(n)
        if len(self._buf) >= BLOCK:
            self._buf.tofile(self._out)
            self.count += len(self._buf)
            self._buf = array("q")

    def done(self) -> NumberFile:
        self._buf.tofile(self._out)
        self.count += len(self._buf)
        self._out.close()
        return NumberFile(self.file, self.count)


Numbers = array | NumberFile


def _union(parts: Iterable[Numbers | NumberRuns], folder: reports.SpillFolder | None) -> Numbers:
    """The numbers of ``parts`` (arrays, files, runs) sorted without repeats: an array unless one of them is
    on disk (then a :class:`NumberFile`)."""
    parts = list(parts)
    if all(isinstance(p, array) for p in parts):
        out = array("q")
        for p in parts:
            out += p  # type: ignore[arg-type]
        return sorted_unique(out)
    return _appendable(*parts[:1], folder, *parts[1:]).unique()


def sorted_unique(values: array) -> array:
    """``values`` (int64) sorted without repeats, never as a list of Python ints: ``values`` itself when it
    already is (ids staged, and rows read back, in id order), else a new array (``values`` is left sorted
    in runs)."""
    if increasing(values):
        return values
    out, last = array("q"), None
    for v in _merged_runs(values):
        if v != last:
            out.append(v)
            last = v
    return out


def counted(values: array | NumberRuns) -> Iterator[tuple[int, int]]:
    """Each value (int64) of ``values`` once, in order, with how many times it is there (an array is left
    sorted in runs)."""
    if isinstance(values, NumberRuns):
        yield from values.counted()
        return
    if increasing(values):
        yield from zip(values, repeat(1))
        return
    yield from _counted_sorted(_merged_runs(values))


def _counted_sorted(values: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Each value of a sorted stream once, with how many times it came."""
    for v, same in groupby(values):
        yield v, sum(1 for _ in same)


def repeated(values: array | NumberRuns) -> set[int]:
    """The values (int64) more than once in ``values`` (an array is left sorted in runs)."""
    out: set[int] = set()
    previous: int | None = None
    for v in (values.merged() if isinstance(values, NumberRuns) else _merged_runs(values)):
        if v == previous:
            out.add(v)
        previous = v
    return out


def _minus(a: Iterable[int], b: Iterable[int]) -> Iterator[int]:
    """The values of sorted ``a`` not in sorted ``b`` (both without repeats), in order (each read once)."""
    others = iter(b)
    y = next(others, None)
    for x in a:
        while y is not None and y < x:
            y = next(others, None)
        if y is not None and y == x:
            continue
        yield x


class IdSet:
    """Clio source ids held compactly, a set of strings to its readers (``in``, ``len``, iteration, ``==``):
    ``<kind>-<number>`` (``matter-7``) as the number in a sorted array per kind, 8 bytes an id (a string
    and its set slot: about 100); any other id (an occurrence, a version, a name) as text. With a ``folder``
    (:class:`reports.SpillFolder`) a kind of more than :data:`RUN` ids is kept on disk instead
    (:class:`NumberRuns` as added, a :class:`NumberFile` once read): what it holds in memory is bounded by
    :data:`RUN`, not by the firm.

    Built by :meth:`add` in any order with repeats (a record's consecutive repeats, its occurrences, are
    appended once); the numbers are sorted in runs when first read. :meth:`common` and :meth:`first_missing`
    compare two sets kind by kind, reading each once in order, without making a third.
    """

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, ssids: Iterable[str] = (), folder: reports.SpillFolder | None = None) -> None:
        self.folder = folder
        self._numbers: dict[str, Numbers] = {}
        self._new: dict[str, Any] = {}  # kind → numbers added since the last read (array, runs or a file)
        self.text: set[str] = set()
        self._last: tuple[str, int] | None = None
        for ssid in ssids:
            self.add(ssid)

    @staticmethod
    def split(ssid: str) -> tuple[str, int] | None:
        """``matter-7`` → ("matter", 7); None when the id does not read back the same from its number."""
        kind, _, num = ssid.rpartition("-")
        if kind and num.isascii() and num.isdigit() and len(num) < 19 and (num == "0" or num[0] != "0"):
            return kind, int(num)
        return None

    def _pending(self, kind: str) -> Any:
        """Where ``kind``'s next numbers are appended."""
        new = self._new.get(kind)
        if new is None:
            new = self._new[kind] = array("q") if self.folder is None else NumberRuns(self.folder)
        elif isinstance(new, NumberFile):  # added to after :meth:`add_numbers`: its numbers first
            new = self._new[kind] = _appendable(new, self.folder or new.file.folder)
        return new

    def add(self, ssid: str) -> None:
        kind, _, num = ssid.rpartition("-")  # :meth:`split`, inline (called once a row)
        if kind and num.isdigit() and len(num) < 19 and num.isascii() and (num[0] != "0" or num == "0"):
            n = int(num)
            last = self._last
            if last is None or last[1] != n or last[0] != kind:
                self._last = (kind, n)
                new = self._new.get(kind)
                if new is None or new.__class__ is NumberFile:
                    new = self._pending(kind)
                new.append(n)
        else:
            self.text.add(ssid)

    def add_numbers(self, kind: str, nums: Numbers) -> None:
        """Add ``kind``'s ids of numbers ``nums`` (an array or a :class:`NumberFile` this set may keep: best
        sorted, no repeats)."""
        pending = self._new.get(kind)
        if pending is None:
            self._new[kind] = nums
        elif isinstance(pending, array) and isinstance(nums, array):
            self._new[kind] = pending + nums
        else:
            self._new[kind] = _appendable(pending, self.folder, nums)
        self._last = None

    @property
    def numbers(self) -> dict[str, Numbers]:
        """Kind → its numbers, sorted, no repeats (an array, or on disk a :class:`NumberFile`)."""
        if self._new:
            new, self._new, self._last = self._new, {}, None
            while new:
                kind, nums = new.popitem()
                if isinstance(nums, NumberRuns):
                    fresh = nums.unique()
                elif isinstance(nums, array):
                    fresh = sorted_unique(nums)
                else:
                    fresh = nums
                del nums
                kept = self._numbers.get(kind)
                self._numbers[kind] = fresh if not kept else _union([kept, fresh], self.folder)
        return self._numbers

    def __len__(self) -> int:
        return sum(len(a) for a in self.numbers.values()) + len(self.text)

    def __contains__(self, ssid: object) -> bool:
        if not isinstance(ssid, str):
            return False
        split = self.split(ssid)
        if split is None:
            return ssid in self.text
        nums = self.numbers.get(split[0])
        if not nums:
            return False
        if isinstance(nums, NumberFile):
            return split[1] in nums
        i = bisect_left(nums, split[1])
        return i < len(nums) and nums[i] == split[1]

    def __iter__(self) -> Iterator[str]:
        for kind, nums in self.numbers.items():
            yield from (f"{kind}-{n}" for n in nums)
        yield from self.text

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IdSet):
            return self.numbers == other.numbers and self.text == other.text
        if isinstance(other, set | frozenset):
            return len(self) == len(other) and all(s in self for s in other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"IdSet({len(self)} ids)"

    def _combined(self, other: IdSet, numbers: Callable[[Numbers, Numbers], Iterable[int]], text: set[str]) -> IdSet:
        out = IdSet()
        out.text = text
        theirs = other.numbers
        for kind in dict.fromkeys([*self.numbers, *theirs]):
            nums = numbers(self._numbers.get(kind, array("q")), theirs.get(kind, array("q")))
            nums = nums if isinstance(nums, NumberFile | array) else array("q", nums)
            if nums:
                out._numbers[kind] = nums
        return out

    def __or__(self, other: IdSet) -> IdSet:
        return self._combined(other, lambda a, b: _union([a, b], self.folder) if a and b else a or b,
                              self.text | other.text)

    def __sub__(self, other: IdSet) -> IdSet:
        return self._combined(other, _minus, self.text - other.text)

    def common(self, other: IdSet) -> int:
        """How many ids are in both."""
        n = len(self.text & other.text)
        theirs = other.numbers
        for kind, nums in self.numbers.items():
            other_nums = theirs.get(kind)
            if other_nums is None:
                continue
            if isinstance(nums, array) and isinstance(other_nums, array) and nums == other_nums:
                n += len(nums)
            else:
                n += len(nums) - sum(1 for _ in _minus(nums, other_nums))
        return n

    def first_missing(self, other: IdSet, limit: int, skip: Iterable[str] = ()) -> list[str]:
        """The first ``limit`` ids (in string order) of this set that are neither in ``other`` nor ``skip``."""
        skip = set(skip)
        theirs = other.numbers

        def named(kind: str, nums: Numbers) -> Iterator[str]:
            return (f"{kind}-{n}" for n in _minus(nums, theirs.get(kind, array("q"))))

        def same(nums: Numbers, other_nums: Numbers | None) -> bool:  # equal arrays: nothing missing, unread
            return isinstance(nums, array) and isinstance(other_nums, array) and nums == other_nums

        gone = chain((s for s in self.text if s not in other.text),
                     *(named(kind, nums) for kind, nums in self.numbers.items() if not same(nums, theirs.get(kind))))
        return heapq.nsmallest(limit, (s for s in gone if s not in skip))


def _appendable(first: Any, folder: reports.SpillFolder | None, *more: Any) -> NumberRuns:
    """A :class:`NumberRuns` holding the numbers of ``first`` and ``more`` (arrays, files, runs)."""
    runs = NumberRuns(folder or next(p.folder if isinstance(p, NumberRuns) else p.file.folder
                                     for p in (first, *more) if not isinstance(p, array)))
    for p in (first, *more):
        for v in (p.merged() if isinstance(p, NumberRuns) else p):
            runs.append(v)
    return runs


@dataclass
class SourceTotals:
    """Per object: distinct Clio ids staged (their source_system_ids, :class:`IdSet`); money keyed by figure."""

    ids: dict[str, IdSet | set[str]] = field(default_factory=dict)
    amounts: dict[str, Decimal] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self.ids.items())}


def _iter(index: Mapping[str, Any] | Callable[[str], Iterable[Envelope]], name: str) -> Iterable[Envelope]:
    if callable(index):
        return index(name)
    return index.get(name, ())


def source_totals(envelopes_by_object: Mapping[str, Iterable[Envelope]] | Callable[[str], Iterable[Envelope]],
                  objects: Iterable[str] | None = None,
                  include: Callable[[str, Envelope], bool] | None = None,
                  figures: Callable[[str], bool] | None = None,
                  folder: reports.SpillFolder | None = None) -> SourceTotals:
    """Stream staged envelopes into expected counts and amount totals.

    Figures: ``bills.total``; ``time.hours`` and ``time.amount`` (TimeEntry activities);
    ``expenses.amount`` (other activities); ``trust.account.<id>`` and ``trust.matter.<id>``
    (bank transactions of Trust accounts; all accounts if ``bank_accounts`` is not staged).
    ``include(object, envelope)`` drops records that are not meant to load; ``figures(key)``: only
    the figures it keeps are summed (e.g. one part of the per-matter trust figures); ``folder``: each
    object's ids are kept there past :data:`RUN` of a kind (:class:`IdSet`), not in memory.
    A record staged twice (delta overlap) counts once; its last staged version wins. Figures are summed
    as the envelopes stream (none kept per record) unless a record is staged twice: that object is then
    read again, keeping each record's last figures (a callable index is called twice).
    """
    if objects is None:
        if callable(envelopes_by_object):
            raise ValueError("source_totals: pass objects=[...] with a callable index")
        objects = list(envelopes_by_object)
    objects = list(objects)
    if not callable(envelopes_by_object):  # read twice when a record is staged twice: no one-shot iterators
        envelopes_by_object = {k: list(v) if isinstance(v, Iterator) else v for k, v in envelopes_by_object.items()}
    trust_accounts: set[int] | None = None
    if "bank_accounts" in objects:
        trust_accounts = {int(e["data"]["id"]) for e in _iter(envelopes_by_object, "bank_accounts")
                          if (e.get("data") or {}).get("type") == "Trust"}
    totals = SourceTotals()
    for obj in objects:
        ids, records = IdSet(folder=folder), 0  # a record staged twice is found after the read: fewer ids than records
        amounts = dict(totals.amounts)
        for env in _iter(envelopes_by_object, obj):  # summed as read: no record's figures kept
            if include is not None and not include(obj, env):
                continue
            ssid = env.get("source_system_id")
            if not ssid:
                raise ValueError(f"{obj}: envelope without source_system_id (clio_id {env.get('clio_id')!r})")
            ids.add(ssid)
            records += 1
            for key, value in _figures(obj, env, trust_accounts).items():
                if figures is None or figures(key):
                    amounts[key] = amounts.get(key, ZERO) + value
        if len(ids) < records:  # staged twice: the last version counts, summed again keeping each record's figures
            ids, amounts = _totals_of_last_versions(envelopes_by_object, obj, include, trust_accounts,
                                                    totals.amounts, figures, folder)
        totals.ids[obj] = ids
        totals.amounts = amounts
    return totals


def _totals_of_last_versions(envelopes_by_object: Any, obj: str, include: Callable[[str, Envelope], bool] | None,
                             trust_accounts: set[int] | None, amounts: dict[str, Decimal],
                             keep: Callable[[str], bool] | None = None,
                             folder: reports.SpillFolder | None = None) -> tuple[IdSet, dict[str, Decimal]]:
    """``obj``'s ids and ``amounts`` plus its figures when a record is staged more than once: each record's
    last version's figures, summed in the order the records were first staged."""
    ids = IdSet(folder=folder)
    per_record: dict[str, dict[str, Decimal]] = {}
    for env in _iter(envelopes_by_object, obj):
        if include is not None and not include(obj, env):
            continue
        ssid = env.get("source_system_id")
        if not ssid:
            raise ValueError(f"{obj}: envelope without source_system_id (clio_id {env.get('clio_id')!r})")
        ids.add(ssid)
        figures = {k: v for k, v in _figures(obj, env, trust_accounts).items() if keep is None or keep(k)}
        if figures or ssid in per_record:  # a last version without figures (kept) takes the earlier's away
            per_record[ssid] = figures
    out = dict(amounts)
    for figures in per_record.values():
        for key, value in figures.items():
            out[key] = out.get(key, ZERO) + value
    return ids, out


def _figures(obj: str, env: Envelope, trust_accounts: set[int] | None) -> dict[str, Decimal]:
    data = env.get("data") or {}
    where = f"{env.get('source_system_id')}"
    if obj == "bills":
        return {"bills.total": _dec(data.get("total"), f"{where}: total")}
    if obj == "activities":
        if data.get("type") == "TimeEntry":
            hours = data.get("quantity_in_hours")
            if hours is None and data.get("quantity") is not None:
                hours = _dec(data["quantity"], f"{where}: quantity") / 3600
            return {"time.hours": _dec(hours, f"{where}: quantity_in_hours"),
                    "time.amount": _dec(data.get("total"), f"{where}: total")}
        return {"expenses.amount": _dec(data.get("total"), f"{where}: total")}
    if obj in MONEY_FIGURES:
        figure, key = MONEY_FIGURES[obj]
        return {figure: _dec(data.get(key), f"{where}: {key}")}
    if obj == "bank_transactions":
        account = data.get("bank_account_id") or (data.get("bank_account") or {}).get("id")
        if trust_accounts is not None and (account is None or int(account) not in trust_accounts):
            return {}
        amount = _dec(data.get("amount"), f"{where}: amount")
        out = {f"trust.account.{account}": amount}
        matter = (data.get("matter") or {}).get("id")
        if matter is not None:
            out[f"trust.matter.{matter}"] = amount
        return out
    return {}


#: The money trail's totals: Clio object -> (figure, amount field); summed over every record (voided
#: allocations included, on both sides: the per-bill books in clio2sf/books.py leave them out).
MONEY_FIGURES: dict[str, tuple[str, str]] = {
    "allocations": ("allocations.amount", "amount"),
    "credit_memos": ("credit_memos.amount", "amount"),
    "interest_charges": ("interest.amount", "total"),
    "outstanding_client_balances": ("outstanding.amount", "total_outstanding_balance"),
    "damages": ("damages.amount", "amount"),
}


@dataclass
class TargetTotals:
    """What Salesforce holds, keyed like :class:`SourceTotals`.

    ``ids``: object → Clio_Id__c values found (one entry per row, duplicates included), or
    ``counts`` (rows) plus ``duplicates`` (Clio_Id__c → rows, only those > 1) from aggregates.
    """

    ids: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, dict[str, int]] = field(default_factory=dict)
    amounts: dict[str, Decimal] = field(default_factory=dict)
    #: object → its rows already summed up (:class:`FoundRows`), in place of ``ids``
    found: dict[str, FoundRows] = field(default_factory=dict)


@dataclass
class FoundRows:
    """One object's Salesforce rows summed up: the Clio records they carry (``base_source_id`` of each
    Clio_Id__c), how many rows, the Clio_Id__c values on more than one row (sorted, with their counts)."""

    found: IdSet | set[str]
    rows: int
    duplicates: dict[str, int]

    @classmethod
    def of(cls, external_ids: list[str]) -> FoundRows:
        return cls({base_source_id(x) for x in external_ids}, len(external_ids), count_duplicates(external_ids))


def count_duplicates(external_ids: Iterable[str]) -> dict[str, int]:
    """Clio_Id__c values appearing on more than one Salesforce row, with their row counts."""
    c = Counter(external_ids)
    return {k: n for k, n in sorted(c.items()) if n > 1}


def sum_field(records: Iterable[Mapping[str, Any]], field_name: str, key_field: str | None = None,
              prefix: str = "") -> dict[str, Decimal]:
    """Sum one numeric field over streamed Salesforce rows, optionally grouped by ``key_field``."""
    out: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for rec in records:
        key = prefix if key_field is None else f"{prefix}{rec.get(key_field)}"
        out[key] += _dec(rec.get(field_name), f"{rec.get('Id')}: {field_name}")
    return dict(out)


@dataclass
class ObjectReconciliation:
    object: str
    expected: int
    found_rows: int
    loaded: int
    rejected: int
    missing: int
    duplicates: int
    unexpected: int
    reject_reasons: dict[str, int]
    missing_ids: list[str]
    duplicate_ids: dict[str, int]

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.duplicates == 0 and self.unexpected == 0


@dataclass(slots=True)
class AmountReconciliation:
    figure: str
    source: Decimal
    target: Decimal | None
    difference: Decimal | None
    ok: bool


@dataclass
class Reconciliation:
    objects: list[ObjectReconciliation]
    #: a list, or (a larger firm's per-matter trust figures compared in parts) a :class:`reports.Spilled` table
    amounts: list[AmountReconciliation] | reports.Spilled

    @property
    def lost(self) -> int:
        return sum(max(o.missing, 0) for o in self.objects)

    @property
    def duplicated(self) -> int:
        return sum(o.duplicates for o in self.objects)

    @property
    def exact(self) -> bool:
        return all(o.ok for o in self.objects) and all(a.ok for a in self.amounts)

    def headline(self) -> str:
        bad_amounts = [a.figure for a in self.amounts if not a.ok]
        extra = sum(o.unexpected for o in self.objects) + sum(-o.missing for o in self.objects if o.missing < 0)
        text = f"{self.lost} lost, {self.duplicated} duplicated"
        if extra:
            text += f", {extra} unexpected extra row(s)"
        if bad_amounts:
            text += f", {len(bad_amounts)} amount figure(s) differ"
        return text

    def to_json(self, lazy: bool = False) -> dict[str, Any]:
        """The reconciliation as JSON; ``lazy``: the amount rows as a :class:`reports.Streamed`, made as
        :func:`reports.write_json` writes them (a firm's trust figures are one row per matter)."""
        def amounts() -> Iterator[dict[str, Any]]:
            return (reports.row_dict(a) for a in self.amounts)

        return {"exact": self.exact, "headline": self.headline(), "lost": self.lost,
                "duplicated": self.duplicated,
                "objects": [dict(asdict(o), ok=o.ok) for o in self.objects],
                "amounts": reports.Streamed(amounts) if lazy else list(amounts())}


def reconcile(source: SourceTotals, target: TargetTotals, rejects: Iterable[Mapping[str, Any]] = (),
              tolerance: Decimal | str = "0.005", list_limit: int = 100) -> Reconciliation:
    """Compare source and target figures; rejects are quarantine lines (repairs do not count:
    a repaired record still loads). Reject ``object`` is the Clio object name."""
    tol = Decimal(str(tolerance))
    rejected: dict[str, dict[str, str]] = defaultdict(dict)  # object → ssid → rule
    for line in rejects:
        if line.get("repair"):
            continue
        obj, ssid = line.get("object"), line.get("source_system_id")
        if obj and ssid:
            rejected[obj].setdefault(ssid, str(line.get("rule") or "rejected"))
    objects = []
    for obj in sorted(set(source.ids) | set(target.ids) | set(target.counts) | set(target.found)):
        expected_ids = source.ids.get(obj, set())
        rej = {s: r for s, r in rejected.get(obj, {}).items() if s in expected_ids}
        unexpected = 0
        if obj in target.ids or obj in target.found:
            got = target.found.get(obj) or FoundRows.of(target.ids[obj])
            dups, found = got.duplicates, got.found
            rej = {s: r for s, r in rej.items() if s not in found}  # loaded after all: not a reject
            if isinstance(found, IdSet) or isinstance(expected_ids, IdSet):  # compared without a third set
                have = found if isinstance(found, IdSet) else IdSet(found)
                want = expected_ids if isinstance(expected_ids, IdSet) else IdSet(expected_ids)
                loaded = want.common(have)
                missing_ids = want.first_missing(have, list_limit, skip=rej)
                unexpected = len(have) - loaded
            else:
                loaded = len(found & expected_ids)
                missing_ids = sorted(expected_ids - found - set(rej))
                unexpected = len(found - expected_ids)
            found_rows = got.rows
        else:
            dups = dict(target.duplicates.get(obj, {}))
            found_rows = target.counts.get(obj, 0)
            loaded = found_rows - sum(n - 1 for n in dups.values())
            missing_ids = []
        missing = len(expected_ids) - loaded - len(rej)
        objects.append(ObjectReconciliation(
            obj, len(expected_ids), found_rows, loaded, len(rej), missing, sum(n - 1 for n in dups.values()),
            unexpected, dict(Counter(rej.values())), missing_ids[:list_limit], dict(list(dups.items())[:list_limit])))
    amounts = []
    for figure in sorted(set(source.amounts) | set(target.amounts)):
        s = source.amounts.get(figure, ZERO)
        t = target.amounts.get(figure)
        diff = None if t is None else t - s
        amounts.append(AmountReconciliation(figure, s, t, diff, diff is not None and abs(diff) <= tol))
    return Reconciliation(objects, amounts)


# ------------------------------------------------------------------ writers

OBJECT_HEADERS = ["object", "expected", "found_rows", "loaded", "rejected", "missing", "duplicates", "unexpected", "ok",
                  "reject_reasons", "missing_ids", "duplicate_ids"]


def write_reconciliation_json(path: Any, rec: Reconciliation) -> Any:
    return reports.write_json(path, rec.to_json())


def write_reconciliation_csv(path: Any, rec: Reconciliation) -> Any:
    """One line per object, then one per amount figure (``figure`` rows)."""
    rows = chain(([getattr(o, h) if h != "ok" else o.ok for h in OBJECT_HEADERS] for o in rec.objects),
                 ([f"figure:{a.figure}", a.source, a.target, a.difference, "", "", "", "", a.ok, "", "", ""]
                  for a in rec.amounts))
    return reports.write_csv(path, OBJECT_HEADERS, rows)


#: Rows listed per table of the page; the rest (OK rows first to go) are in the CSV and JSON next to it.
TABLE_ROWS = 200


def figure_label(figure: str, labels: Mapping[str, str] | None = None) -> str:
    """``bills.total`` → ``Bills: total``; ``trust.matter.7`` → ``Trust: 00007-Lopez (matter-7)``."""
    parts = figure.split(".")
    if len(parts) == 3 and parts[0] == "trust":
        kind = "bank_account" if parts[1] == "account" else parts[1]
        return f"Trust: {readable(f'{kind}-{parts[2]}', labels)}"
    head, _, rest = figure.partition(".")
    head = head.replace("_", " ").capitalize()
    return f"{head}: {rest.replace('_', ' ')}" if rest else head


#: Figures that are not money (no currency on the page).
NOT_MONEY = frozenset({"time.hours"})


def _unit(figure: str, currency: str | None) -> str | None:
    return None if figure in NOT_MONEY else currency


def capped(rows: list[Any], limit: int, what: str, full: str) -> tuple[list[Any], str]:
    """The first ``limit`` rows and, when some are left out, an escaped note saying how many and where."""
    if len(rows) <= limit:
        return rows, ""
    return rows[:limit], (f"<p class='muted'>first {limit} of {len(rows)} {reports.esc(what)} listed "
                          f"(exceptions first); all of them: {full}</p>")


def reconciliation_html(rec: Reconciliation, title: str = "Reconciliation against source totals",
                        extra_html: str = "", *, context: dict[str, Any] | None = None,
                        currency: str | None = None, labels: Mapping[str, str] | None = None,
                        limit: int = TABLE_ROWS, exceptions_only: bool = False, views_html: str = "",
                        files_href: str = "") -> str:
    """The page: header (firm, migration, run, dates), the headline, then records, exceptions and amounts,
    each table exceptions first and at most ``limit`` rows (every row is in ``reconciliation.csv``).
    Amounts are money (``1,234.50 USD``); records are named the way the firm knows them (``labels``).
    ``exceptions_only`` leaves out every row that agrees (the plugin's filter); ``views_html`` (escaped
    links to the other view) goes under the headline; ``files_href`` is where the CSV files are, relative
    to the page (empty: the page's own folder)."""
    full = f"<a href='{reports.esc(files_href)}reconciliation.csv'>reconciliation.csv</a>"
    body = [reports.report_header(context), reports.banner(rec.headline(), "ok" if rec.exact else "bad"),
            views_html, "<h2>Records</h2>"]
    objects = sorted((o for o in rec.objects if not (exceptions_only and o.ok and not o.rejected)),
                     key=lambda o: (o.ok, o.object))
    body.append(reports.table(
        ["Object", "Expected", "Rows found", "Loaded", "Rejected", "Missing", "Duplicates", "Unexpected", "Result"],
        [[o.object, o.expected, o.found_rows, o.loaded, o.rejected, o.missing, o.duplicates, o.unexpected,
          "OK" if o.ok else "EXCEPTION"] for o in objects],
        numeric=range(1, 8), row_classes=["" if o.ok else "bad" for o in objects]))
    exceptions = [o for o in objects if not o.ok or o.rejected]
    if exceptions:
        body.append("<h2>Exceptions</h2>")
        rows = []
        for o in exceptions:
            rows += [[o.object, "missing", readable(ssid, labels), 1] for ssid in o.missing_ids]
            if o.missing and not o.missing_ids:
                rows.append([o.object, "missing" if o.missing > 0 else "unexpected rows",
                             "(ids not listed: counts only)", abs(o.missing)])
            rows += [[o.object, "duplicate", readable(ssid, labels), n] for ssid, n in o.duplicate_ids.items()]
            if o.unexpected:
                rows.append([o.object, "unexpected rows", "Clio_Id__c not among the staged records", o.unexpected])
        rows += [[o.object, "rejected", reason, n] for o in exceptions for reason, n in sorted(o.reject_reasons.items())]
        rows, note = capped(rows, limit, "exceptions", full)
        body.append(reports.table(["Object", "Kind", "Record / reason", "Count"], rows, numeric=[3]) + note)
    body.append("<h2>Amounts</h2>")
    body.append(amounts_html(rec.amounts, currency=currency, labels=labels, limit=limit,
                             exceptions_only=exceptions_only, full=full))
    return reports.page(title, "".join(body) + extra_html)


def write_reconciliation_html(path: Any, rec: Reconciliation, extra_html: str = "", **kwargs: Any) -> Any:
    """Write :func:`reconciliation_html` (``context``, ``currency``, ``labels``, ``limit`` pass through)."""
    return reports.write_text(path, reconciliation_html(rec, extra_html=extra_html, **kwargs))


def amounts_html(amounts: Iterable[AmountReconciliation], *, currency: str | None = None,
                 labels: Mapping[str, str] | None = None, limit: int = TABLE_ROWS, exceptions_only: bool = False,
                 full: str = "reconciliation.csv") -> str:
    """The amounts table: differing figures first, money with ``currency``, trust figures by name; the
    per-matter trust figures that agree are one line (the books list each matter). ``full`` (escaped
    HTML) says where every figure is when the table is cut at ``limit`` rows."""
    agreeing, totals = 0, [ZERO, ZERO, ZERO]  # the agreeing per-matter figures: counted and summed as read
    listed = []
    for a in amounts:
        if a.ok and a.figure.startswith("trust.matter."):
            if not exceptions_only:
                agreeing += 1
                totals = [totals[0] + a.source, totals[1] + (a.target or ZERO), totals[2] + (a.difference or ZERO)]
        elif not (a.ok and exceptions_only):
            listed.append(a)
    listed.sort(key=lambda a: (a.ok, a.figure.startswith("trust."), a.figure))
    listed, note = capped(listed, limit, "amount figures", full)
    rows = [[figure_label(a.figure, labels), reports.money(a.source, _unit(a.figure, currency)),
             "(not measured)" if a.target is None else reports.money(a.target, _unit(a.figure, currency)),
             reports.money(a.difference, _unit(a.figure, currency)), "OK" if a.ok else "DIFFERS"] for a in listed]
    classes = ["" if a.ok else "bad" for a in listed]
    if agreeing:
        rows.append([f"Trust per matter: {agreeing} matter(s) agree (each listed under Trust per matter)",
                     *(reports.money(t, currency) for t in totals), "OK"])
        classes.append("")
    return reports.table(["Figure", "Clio", "Salesforce", "Difference", "Result"], rows, numeric=[1, 2, 3],
                         row_classes=classes) + note


def reconciliation_from_json(doc: Mapping[str, Any]) -> Reconciliation:
    """A :class:`Reconciliation` back from ``reconciliation.json`` (amounts as decimals)."""
    def dec(v: Any) -> Decimal | None:
        return None if v is None else Decimal(str(v))

    empty: dict[str, Any] = {"object": "", "reject_reasons": {}, "missing_ids": [], "duplicate_ids": {}}
    objects = [ObjectReconciliation(**{k: o.get(k) or empty.get(k, 0) for k in ObjectReconciliation.__dataclass_fields__})
               for o in doc.get("objects") or []]
    amounts = [AmountReconciliation(a["figure"], dec(a.get("source")) or ZERO, dec(a.get("target")),
                                    dec(a.get("difference")), bool(a.get("ok"))) for a in doc.get("amounts") or []]
    return Reconciliation(objects, amounts)
