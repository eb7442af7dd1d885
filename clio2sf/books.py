"""The firm's books on both sides: per bill paid + credited + outstanding = total, per matter the
trust ledger, per client what is owed; computed from Clio's raw records and from Salesforce.

The Clio side reads the staged records only (bills, allocations, bank accounts and transactions,
matters' account balances, outstanding client balances); the Salesforce side reads the org only
(``Clio_Billing__c``, ``Clio_Payment__c``, ``Ledger__c``, ``Clio_Client_Balance__c``).  Neither looks
at what the transform sent.  Each side must tie out on its own, and the two must agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from clio2sf import reports

Envelope = Mapping[str, Any]
ZERO = Decimal(0)
TOLERANCE = Decimal("0.005")
#: Bill states whose money is real (drafts, voided and deleted bills are owed nothing).
LIVE_STATES = frozenset({"awaiting_payment", "paid"})


def _dec(value: Any, where: str) -> Decimal:
    try:
        return ZERO if value is None else Decimal(str(value))
    except ArithmeticError:
        raise ValueError(f"{where}: {value!r} is not a number") from None


@dataclass(slots=True)
class BillBook:
    """One bill: its total and where the money came from (voided allocations count for nothing)."""

    number: str | None = None
    state: str | None = None
    total: Decimal = ZERO
    paid: Decimal = ZERO
    credited: Decimal = ZERO
    outstanding: Decimal = ZERO
    paid_from_trust: Decimal = ZERO
    client: str | None = None  # contact source id (contact-9)

    @property
    def ties_out(self) -> bool:
        return abs(self.paid + self.credited + self.outstanding - self.total) <= TOLERANCE


@dataclass(slots=True)
class TrustBook:
    """One matter's trust ledger: its transactions' sum, the lowest running balance, and (Clio only)
    the balance Clio reports for the matter."""

    ledger: Decimal = ZERO
    lowest: Decimal = ZERO
    transactions: int = 0
    reported: Decimal | None = None

    @property
    def balances(self) -> bool:
        return self.lowest >= -TOLERANCE and (self.reported is None or abs(self.reported - self.ledger) <= TOLERANCE)


@dataclass
class Books:
    bills: dict[str, BillBook] = field(default_factory=dict)  # bill source id (bill-12) -> book
    trust: dict[str, TrustBook] = field(default_factory=dict)  # matter source id (matter-7) -> ledger
    clients: dict[str, Decimal] = field(default_factory=dict)  # contact source id -> outstanding


def _entry(date: str, tiebreak: str, amount: Decimal) -> str:
    """One ledger entry kept until its matter's running balance is taken, as one string (about 90 bytes,
    against some 300 for a tuple of two strings and a Decimal): the fields joined by NUL, which sorts below
    any character of a date or an id, so the strings sort as the (date, tiebreak) pairs."""
    return f"{date}\0{tiebreak}\0{amount}"


def _running(entries: Iterable[str]) -> tuple[Decimal, Decimal]:
    """(sum, lowest running balance) of one matter's entries (:func:`_entry`) in (date, tiebreak, amount) order."""
    total, lowest = ZERO, ZERO
    for _, amount in sorted((head, Decimal(amount)) for head, amount in (e.rsplit("\0", 1) for e in entries)):
        total += amount
        lowest = min(lowest, total)
    return total, lowest


def clio_books(records: Callable[[str], Iterable[Envelope]], objects: Iterable[str],
               part: Container[str] | None = None, by_client: bool = False) -> Books:
    """The books from staged Clio records; ``records(name)`` streams an object's envelopes.

    ``part``: only the bills, matters and clients whose source id is in it (the bills by their own id, or
    with ``by_client`` by their client's: the client balances of a part need all its clients' bills)."""
    have = set(objects)
    books = Books()
    if "bills" in have:
        for env in records("bills"):
            d = env.get("data") or {}
            if d.get("state") in LIVE_STATES:
                where = env.get("source_system_id")
                client = (d.get("client") or {}).get("id")
                if part is not None and (f"contact-{client}" if by_client else f"bill-{d['id']}") not in part:
                    continue
                books.bills[f"bill-{d['id']}"] = BillBook(
                    number=d.get("number"), state=d.get("state"), total=_dec(d.get("total"), f"{where}: total"),
                    outstanding=_dec(d.get("balance"), f"{where}: balance"),
                    client=f"contact-{client}" if client is not None else None)
    if "allocations" in have:
        for env in records("allocations"):
            d = env.get("data") or {}
            bill = books.bills.get(f"bill-{(d.get('bill') or {}).get('id')}")
            if bill is None or d.get("voided_at"):
                continue
            amount = _dec(d.get("amount"), f"{env.get('source_system_id')}: amount")
            if (d.get("parent") or {}).get("type") == "CreditMemo":
                bill.credited += amount
            else:
                bill.paid += amount
                if (d.get("source_bank_account") or {}).get("type") == "Trust":
                    bill.paid_from_trust += amount
    trust_accounts: set[str] | None = None
    if "bank_accounts" in have:
        trust_accounts = {str((e.get("data") or {}).get("id")) for e in records("bank_accounts")
                          if (e.get("data") or {}).get("type") == "Trust"}
    if "bank_transactions" in have and trust_accounts is not None:
        entries: dict[str, list[str]] = defaultdict(list)
        for env in records("bank_transactions"):
            d = env.get("data") or {}
            matter = (d.get("matter") or {}).get("id")
            if str(d.get("bank_account_id")) in trust_accounts and matter is not None and (
                    part is None or f"matter-{matter}" in part):
                entries[f"matter-{matter}"].append(_entry(str(d.get("date")), f"{int(d['id']):012d}",
                                                          _dec(d.get("amount"), f"{env.get('source_system_id')}: amount")))
        for sid in list(entries):  # each matter's entries dropped once summed
            rows = entries.pop(sid)
            total, lowest = _running(rows)
            books.trust[sid] = TrustBook(ledger=total, lowest=lowest, transactions=len(rows))
    if "matters" in have and trust_accounts is not None:
        for env in records("matters"):
            d = env.get("data") or {}
            if part is not None and f"matter-{d.get('id')}" not in part:
                continue
            balances = [b for b in d.get("account_balances") or () if str(b.get("id")) in trust_accounts]
            if balances or f"matter-{d.get('id')}" in books.trust:
                book = books.trust.setdefault(f"matter-{d['id']}", TrustBook())
                book.reported = sum((_dec(b.get("balance"), f"matter-{d['id']}: account_balances") for b in balances),
                                    ZERO)
    if "outstanding_client_balances" in have:
        for env in records("outstanding_client_balances"):
            d = env.get("data") or {}
            contact = (d.get("contact") or {}).get("id", d.get("id"))
            if part is not None and f"contact-{contact}" not in part:
                continue
            books.clients[f"contact-{contact}"] = _dec(d.get("total_outstanding_balance"),
                                                       f"{env.get('source_system_id')}: total_outstanding_balance")
    return books


def salesforce_books(stream: Callable[[str, list[str]], Iterable[Mapping[str, Any]]], trust_accounts: set[str] | None,
                     sobjects: set[str], part: Container[str] | None = None, by_client: bool = False) -> Books:
    """The books read back from Salesforce; ``stream(sobject, columns)`` yields the flattened rows that
    have a ``Clio_Id__c`` (columns the org lacks come back empty).

    ``trust_accounts`` are the Clio ids of trust bank accounts (reference data: Ledger__c keeps the
    Clio account id of each entry); ``sobjects`` are those that exist in the org; ``part`` and
    ``by_client`` as :func:`clio_books` (every row is read, those of other parts skipped).
    """
    books = Books()
    if "Clio_Billing__c" in sobjects:
        for r in stream("Clio_Billing__c", ["Clio_Id__c", "Clio_Invoice_Number__c", "Clio_Status__c", "Clio_Total__c",
                                            "Clio_Balance__c", "Contact__r.Clio_Id__c", "Account__r.Clio_Id__c"]):
            if str(r.get("Clio_Status__c")) in ("Awaiting Payment", "Paid") and (part is None or str(
                    (r.get("Contact__r.Clio_Id__c") or r.get("Account__r.Clio_Id__c")) if by_client
                    else r["Clio_Id__c"]) in part):
                books.bills[str(r["Clio_Id__c"])] = BillBook(
                    number=r.get("Clio_Invoice_Number__c"), state=r.get("Clio_Status__c"),
                    total=_dec(r.get("Clio_Total__c"), f"{r['Clio_Id__c']}: Clio_Total__c"),
                    outstanding=_dec(r.get("Clio_Balance__c"), f"{r['Clio_Id__c']}: Clio_Balance__c"),
                    client=r.get("Contact__r.Clio_Id__c") or r.get("Account__r.Clio_Id__c"))
    if "Clio_Payment__c" in sobjects:
        for r in stream("Clio_Payment__c", ["Clio_Id__c", "Clio_Amount__c", "Clio_Kind__c", "Clio_Voided_At__c",
                                            "Clio_Source_Account_Type__c", "Clio_Billing__r.Clio_Id__c"]):
            bill = books.bills.get(str(r.get("Clio_Billing__r.Clio_Id__c")))
            if bill is None or r.get("Clio_Voided_At__c"):
                continue
            amount = _dec(r.get("Clio_Amount__c"), f"{r['Clio_Id__c']}: Clio_Amount__c")
            if r.get("Clio_Kind__c") == "Credit Memo":
                bill.credited += amount
            else:
                bill.paid += amount
                if r.get("Clio_Source_Account_Type__c") == "Trust":
                    bill.paid_from_trust += amount
    if "Ledger__c" in sobjects and trust_accounts is not None:
        entries: dict[str, list[str]] = defaultdict(list)
        for r in stream("Ledger__c", ["Clio_Id__c", "Clio_Date__c", "Clio_Amount__c", "Clio_Bank_Account_Id__c",
                                      "Case__r.Clio_Id__c", "Opportunity__r.Clio_Id__c"]):
            matter = r.get("Case__r.Clio_Id__c") or r.get("Opportunity__r.Clio_Id__c")
            if str(r.get("Clio_Bank_Account_Id__c")) in trust_accounts and matter and (part is None or str(matter) in part):
                tiebreak = str(r["Clio_Id__c"]).split("-", 1)[-1]
                entries[str(matter)].append(_entry(str(r.get("Clio_Date__c")), f"{int(tiebreak):012d}" if tiebreak.isdigit()
                                                   else tiebreak, _dec(r.get("Clio_Amount__c"), f"{r['Clio_Id__c']}: amount")))
        for sid in list(entries):  # each matter's entries dropped once summed
            rows = entries.pop(sid)
            total, lowest = _running(rows)
            books.trust[sid] = TrustBook(ledger=total, lowest=lowest, transactions=len(rows))
    if "Clio_Client_Balance__c" in sobjects:
        for r in stream("Clio_Client_Balance__c", ["Clio_Id__c", "Clio_Total_Outstanding__c", "Contact__r.Clio_Id__c",
                                                   "Account__r.Clio_Id__c"]):
            contact = r.get("Contact__r.Clio_Id__c") or r.get("Account__r.Clio_Id__c")
            if contact and (part is None or str(contact) in part):
                books.clients[str(contact)] = _dec(r.get("Clio_Total_Outstanding__c"), f"{r['Clio_Id__c']}: total")
    return books


# ------------------------------------------------------------------ comparison


class _Row:
    __slots__ = ()
    status: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(slots=True)
class BillRow(_Row):
    bill: str
    number: str | None
    clio: dict[str, Any]
    salesforce: dict[str, Any] | None
    status: str  # ok | differs | missing | rejected | does not tie out


@dataclass(slots=True)
class TrustRow(_Row):
    matter: str
    clio_reported: Decimal | None
    clio_ledger: Decimal
    clio_lowest: Decimal
    salesforce_ledger: Decimal | None
    salesforce_lowest: Decimal | None
    status: str


@dataclass(slots=True)
class ClientRow(_Row):
    contact: str
    clio: Decimal
    clio_bills: Decimal
    salesforce: Decimal | None
    salesforce_bills: Decimal | None
    status: str


def _bad(rows: Iterable[_Row]) -> int:
    return rows.bad if isinstance(rows, reports.Spilled) else sum(1 for r in rows if not r.ok)


@dataclass
class BooksReconciliation:
    """The books compared: rows per live bill, per matter with trust and per client, as lists or (books
    compared in parts, :func:`compare_books_in_parts`) as :class:`reports.Spilled` tables read from disk."""

    bills: list[BillRow] | reports.Spilled
    trust: list[TrustRow] | reports.Spilled
    clients: list[ClientRow] | reports.Spilled
    folder: Any = None  # the spilled tables' temporary folder (:class:`reports.SpillFolder`)

    @property
    def exact(self) -> bool:
        return not (_bad(self.bills) or _bad(self.trust) or _bad(self.clients))

    def headline(self) -> str:
        def part(rows: Any, what: str) -> str:
            return f"{len(rows) - _bad(rows)}/{len(rows)} {what}"
        return (f"books: {part(self.bills, 'bills tie out and agree')}, {part(self.trust, 'matter trust ledgers balance')}"
                f", {part(self.clients, 'client balances agree')}")

    def to_json(self, lazy: bool = False) -> dict[str, Any]:
        """The books as JSON; ``lazy``: each table as a :class:`reports.Streamed`, its rows made as
        :func:`reports.write_json` writes them (one per live bill, per matter with trust, per client)."""
        def table(rows: list[Any]) -> Any:
            made = lambda: (dict(reports.row_dict(r), ok=r.ok) for r in rows)  # noqa: E731
            return reports.Streamed(made) if lazy else list(made())

        return {"exact": self.exact, "headline": self.headline(),
                "bills": table(self.bills), "trust": table(self.trust), "clients": table(self.clients)}


def _figures(b: BillBook) -> dict[str, Any]:
    return {"total": b.total, "paid": b.paid, "credited": b.credited, "outstanding": b.outstanding,
            "paid_from_trust": b.paid_from_trust, "ties_out": b.ties_out}


def _same(a: Decimal | None, b: Decimal | None) -> bool:
    return a is not None and b is not None and abs(a - b) <= TOLERANCE


def compare_books(clio: Books, sf: Books, rejected: Iterable[str] = (),
                  org_clients: bool | None = None) -> BooksReconciliation:
    """Row per bill, matter and client; ``rejected`` are source ids quarantined on the way (explained);
    ``org_clients``: the org has client balances (default: ``sf`` has some)."""
    rejected = set(rejected)
    bills = []
    for sid in sorted(clio.bills, key=lambda s: (len(s), s)):
        c, s = clio.bills[sid], sf.bills.get(sid)
        if s is None:
            status = "rejected" if sid in rejected else "missing in Salesforce"
        elif not c.ties_out or not s.ties_out:
            status = "does not tie out"
        elif all(_same(getattr(c, k), getattr(s, k)) for k in ("total", "paid", "credited", "outstanding",
                                                                "paid_from_trust")):
            status = "ok"
        else:
            status = "differs"
        bills.append(BillRow(sid, c.number, _figures(c), _figures(s) if s else None, status))
    for sid in sorted(set(sf.bills) - set(clio.bills)):
        bills.append(BillRow(sid, sf.bills[sid].number, {}, _figures(sf.bills[sid]), "not in Clio"))
    trust = []
    for sid in sorted(set(clio.trust) | set(sf.trust), key=lambda s: (len(s), s)):
        c, s = clio.trust.get(sid, TrustBook()), sf.trust.get(sid)
        if not c.balances:
            status = "Clio's ledger does not balance"
        elif s is None:
            status = "ok" if abs(c.ledger) <= TOLERANCE and not c.transactions else "missing in Salesforce"
        elif s.lowest < -TOLERANCE:
            status = "goes below zero in Salesforce"
        else:
            status = "ok" if _same(c.ledger, s.ledger) else "differs"
        trust.append(TrustRow(sid, c.reported, c.ledger, c.lowest, s.ledger if s else None, s.lowest if s else None,
                              status))
    if org_clients is None:
        org_clients = bool(sf.clients)
    owed_clio = _owed(clio)
    owed_sf = _owed(sf)
    clients = []
    for sid in sorted(set(clio.clients) | set(sf.clients), key=lambda s: (len(s), s)):
        c, s = clio.clients.get(sid), sf.clients.get(sid)
        cb, sb = owed_clio.get(sid, ZERO), owed_sf.get(sid) if org_clients else None
        if c is None:
            status = "not in Clio"
        elif not _same(c, cb):
            status = "Clio's balance is not its bills'"
        elif s is None:
            status = "rejected" if sid in rejected else "missing in Salesforce"
        else:
            status = "ok" if _same(c, s) else "differs"
        clients.append(ClientRow(sid, c if c is not None else ZERO, cb, s, sb, status))
    return BooksReconciliation(bills, trust, clients)


def _bill_key(r: BillRow) -> tuple[int, str]:
    return len(r.bill), r.bill


def compare_books_in_parts(clio: Callable[[Container[str], bool], Books], sf: Callable[[Container[str], bool], Books],
                           parts: Iterable[Container[str]], rejected: Iterable[str] = (),
                           clients: bool = True) -> BooksReconciliation:
    """:func:`compare_books` one part at a time (``parts``: a partition of the source ids, e.g. by the
    last digits of the number), the rows of each spilled to disk and read back merged, in the order of
    the books compared whole: what is held at a time is one part's books. ``clio(part, by_client)`` and
    ``sf(part, by_client)`` make a side's books of a part (:func:`clio_books`, :func:`salesforce_books`):
    the bills and trust ledgers by their own ids, then (``clients``: a side has client balances) the
    clients' balances with their clients' bills (``by_client``)."""
    folder = reports.SpillFolder()
    rejected = set(rejected)
    bills, trust, clients_rows = (reports.Spilled(folder, "bills"), reports.Spilled(folder, "trust"),
                                  reports.Spilled(folder, "clients"))
    parts = list(parts)
    bills.section(_bill_key)
    trust.section(lambda r: (len(r.matter), r.matter))
    clients_rows.section(lambda r: (len(r.contact), r.contact))
    not_in_clio = []
    org_clients = False  # as compare_books: a client's Salesforce bills are shown when the org has client balances
    for part in parts:
        theirs = sf(part, False)
        org_clients = org_clients or bool(theirs.clients)
        one = compare_books(clio(part, False), theirs, rejected)
        del theirs
        bills.add(r for r in one.bills if r.status != "not in Clio")
        not_in_clio.append([r for r in one.bills if r.status == "not in Clio"])
        trust.add(one.trust)
        del one
    bills.section(lambda r: r.bill)
    for rows in not_in_clio:
        bills.add(rows)
    del not_in_clio
    for part in parts if clients else ():
        clients_rows.add(compare_books(clio(part, True), sf(part, True), rejected, org_clients=org_clients).clients)
    return BooksReconciliation(bills, trust, clients_rows, folder)


def _owed(books: Books) -> dict[str, Decimal]:
    """Outstanding per client from the bills awaiting payment."""
    out: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for bill in books.bills.values():
        if bill.outstanding > 0 and bill.client:
            out[bill.client] += bill.outstanding
    return out


# ------------------------------------------------------------------ report


def books_html(rec: BooksReconciliation, *, labels: Mapping[str, str] | None = None, currency: str | None = None,
               limit: int = 200, exceptions_only: bool = False, files_href: str = "") -> str:
    """The books section of the reconciliation report: per table the exceptions first, at most ``limit``
    rows (every row is in ``books.csv``), money as ``1,234.50 USD``, matters and clients by name."""
    from clio2sf.labels import readable

    full = f"<a href='{reports.esc(files_href)}books.csv'>books.csv</a>"

    def m(value: Any) -> str:
        return reports.money(value, currency) if value is not None else "–"

    def section(rows: Iterable[Any], what: str) -> tuple[list, str]:
        """The first ``limit`` rows, exceptions first then the rest, each in order (read once, only those kept)."""
        bad: list[Any] = []
        good: list[Any] = []
        count = exceptions = 0
        for r in rows:
            if not r.ok:
                exceptions += 1
                if len(bad) < limit:
                    bad.append(r)
            elif not exceptions_only:
                count += 1
                if len(good) < limit:
                    good.append(r)
        count += exceptions
        ordered = (bad + good)[:limit]
        if count <= limit:
            return ordered, ""
        return ordered, (f"<p class='muted'>first {limit} of {count} {what} listed ({exceptions} exception(s), "
                         f"listed first); all of them: {full}</p>")

    out = [reports.banner(rec.headline(), "ok" if rec.exact else "bad"),
           "<h2>Bills: payments, credits and balances</h2>",
           "<p>Per bill: paid (valid payment allocations) + credited (credit memos) + outstanding = total, "
           "in Clio and in Salesforce, and the two agree.</p>"]
    bills, note = section(rec.bills, "bills")
    rows = []
    for r in bills:
        c, s = r.clio or {}, r.salesforce or {}
        rows.append([f"{r.number} ({r.bill})" if r.number else r.bill,
                     *(m(c.get(k)) for k in ("total", "paid", "paid_from_trust", "credited", "outstanding")),
                     *(m(s.get(k)) for k in ("total", "paid", "paid_from_trust", "credited", "outstanding")),
                     "OK" if r.ok else r.status.upper()])
    out.append(reports.table(["Invoice", "Clio total", "paid", "of which trust", "credited", "outstanding",
                              "Salesforce total", "paid", "of which trust", "credited", "outstanding", "Result"],
                             rows, numeric=range(1, 11), row_classes=["" if r.ok else "bad" for r in bills]) + note)
    out.append("<h2>Trust per matter</h2><p>The matter's trust transactions in Clio, the balance Clio reports for the "
               "matter, and the Ledger__c entries in Salesforce; no running balance below zero.</p>")
    trust, note = section(rec.trust, "matters")
    out.append(reports.table(
        ["Matter", "Clio reported", "Clio ledger", "lowest", "Salesforce ledger", "lowest", "Result"],
        [[readable(r.matter, labels), m(r.clio_reported), m(r.clio_ledger), m(r.clio_lowest), m(r.salesforce_ledger),
          m(r.salesforce_lowest), "OK" if r.ok else r.status.upper()] for r in trust],
        numeric=range(1, 6), row_classes=["" if r.ok else "bad" for r in trust]) + note)
    if rec.clients:
        out.append("<h2>Outstanding per client</h2>")
        clients, note = section(rec.clients, "clients")
        out.append(reports.table(
            ["Client", "Clio", "Clio bills", "Salesforce", "Salesforce bills", "Result"],
            [[readable(r.contact, labels), m(r.clio), m(r.clio_bills), m(r.salesforce), m(r.salesforce_bills),
              "OK" if r.ok else r.status.upper()] for r in clients],
            numeric=range(1, 5), row_classes=["" if r.ok else "bad" for r in clients]) + note)
    return "".join(out)


BOOKS_CSV_HEADERS = ["section", "source_id", "name", "status", "figure", "clio", "salesforce"]


def books_rows(rec: BooksReconciliation, labels: Mapping[str, str] | None = None) -> list[list[Any]]:
    """Every books figure for ``books.csv``: one line per bill, matter or client and figure."""
    return list(iter_books_rows(rec, labels))


def iter_books_rows(rec: BooksReconciliation, labels: Mapping[str, str] | None = None) -> Iterator[list[Any]]:
    """:func:`books_rows` one at a time (``reports.write_csv`` streams them)."""
    names = labels or {}
    for b in rec.bills:
        c, s = b.clio or {}, b.salesforce or {}
        for k in ("total", "paid", "paid_from_trust", "credited", "outstanding"):
            yield ["bill", b.bill, b.number, b.status, k, c.get(k), s.get(k)]
    for t in rec.trust:
        yield ["trust", t.matter, names.get(t.matter), t.status, "reported", t.clio_reported, ""]
        yield ["trust", t.matter, names.get(t.matter), t.status, "ledger", t.clio_ledger, t.salesforce_ledger]
        yield ["trust", t.matter, names.get(t.matter), t.status, "lowest", t.clio_lowest, t.salesforce_lowest]
    for cl in rec.clients:
        yield ["client", cl.contact, names.get(cl.contact), cl.status, "outstanding", cl.clio, cl.salesforce]
        yield ["client", cl.contact, names.get(cl.contact), cl.status, "outstanding_bills", cl.clio_bills,
               cl.salesforce_bills]


def books_from_json(doc: Mapping[str, Any]) -> BooksReconciliation:
    """A :class:`BooksReconciliation` back from the ``books`` part of ``reconciliation.json``."""
    def pick(cls: type, row: Mapping[str, Any]) -> Any:
        return cls(**{k: row.get(k) for k in cls.__dataclass_fields__})

    return BooksReconciliation([pick(BillRow, r) for r in doc.get("bills") or []],
                               [pick(TrustRow, r) for r in doc.get("trust") or []],
                               [pick(ClientRow, r) for r in doc.get("clients") or []])
