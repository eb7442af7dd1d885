"""One Clio grant's request budget and access token, shared by every worker that uses the grant.

Clio limits requests per access token (per user and app) in fixed windows and announces the
state on every response (``X-RateLimit-Limit``, ``-Remaining``, ``-Reset`` as epoch seconds) and
``Retry-After`` on a 429.  The limit changes (50/min at peak, more off-peak), so nothing here is a
constant.  Every process that uses one grant (base URL + client id + refresh token) shares one
document in a :mod:`clio2sf.sharedstate` store (a file on one host; a SQL row for every host):

* **one access token per grant** (:class:`TokenCache`): the first worker that needs a token
  refreshes it under a short lease while the others wait, and every worker uses the cached one
  until it expires or Clio refuses it.  The token is stored encrypted with a key derived from the
  connection's client secret and refresh token, so the store alone never reveals it;
* **one request budget per grant** (:class:`RateBudget`): every request takes a slot first
  (``acquire``) and hands the response's headers back (``observe``).  Slots are counted against
  the last announced ``Remaining`` minus every slot granted since, and spread evenly over the
  time left in the window (``(reset - now) / remaining``), so a higher announced limit gives a
  faster pace at once;
* **no request on an unknown window while others are in flight**: when no window is known (the
  first request, or after the announced reset) exactly one request goes (a *probe*) once every
  earlier request has answered; its headers are then exact.  A response that opens a new window
  counts every request still in flight as already spent.  These two rules make the budget safe
  however the requests of many hosts interleave on the network: the shared document knows every
  granted slot, and no slot is granted on a guess;
* **a 429** holds every worker of the grant for its ``Retry-After`` (:meth:`RateBudget.penalize`).

Slots in flight are leased (``lease`` seconds, the request timeout plus a margin), so a killed
worker cannot hold the budget for longer than that.

DAG-facing surface: :class:`RateBudget` (``acquire() -> Slot`` before a request,
``observe(headers, slot)`` after it, ``release(slot)`` when it failed without an answer,
``penalize(seconds)`` on a 429), :class:`TokenCache`, and the pure helpers
:func:`parse_rate_headers`, :func:`retry_after_seconds`, :func:`grant`, :func:`fold`.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from clio2sf.sharedstate import FileStore, MemoryStore, SharedStore

#: A small margin after the announced reset, for clock skew and rounding of the epoch seconds.
RESET_MARGIN = 0.05


@dataclass(frozen=True)
class RateHeaders:
    """The rate-limit headers of one response."""

    limit: int
    remaining: int
    reset: float


def _header(headers: Mapping[str, str], name: str) -> str | None:
    if name in headers:
        return headers[name]
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None


def parse_rate_headers(headers: Mapping[str, str]) -> RateHeaders | None:
    """Return the X-RateLimit-* headers, or None when a response has none (or garbage)."""
    raw = [_header(headers, f"X-RateLimit-{n}") for n in ("Limit", "Remaining", "Reset")]
    if any(v is None for v in raw):
        return None
    try:
        return RateHeaders(int(raw[0]), max(0, int(raw[1])), float(raw[2]))
    except ValueError:
        return None


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Return ``Retry-After`` in seconds (delta-seconds or HTTP-date form), or None."""
    raw = _header(headers, "Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


#: Seconds between looks at the shared state while a probe is in flight.
POLL = 0.05
#: Default lease of a granted slot (seconds): a request that has not answered by then is forgotten.
DEFAULT_LEASE = 90.0


@dataclass
class BudgetState:
    """The shared budget of one grant (the ``budget`` part of its shared document)."""

    limit: int | None = None
    remaining: float | None = None
    reset: float | None = None
    next_at: float = 0.0
    hold_until: float = 0.0
    #: slot id -> lease expiry, for every granted request whose answer has not been folded in
    inflight: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, raw: Any) -> BudgetState:
        if not isinstance(raw, dict):
            return cls()
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in raw.items() if k in known})


def grant(state: BudgetState, now: float, slot_id: str, *, reserve: int = 0, lease: float = DEFAULT_LEASE
          ) -> tuple[float, bool]:
    """Decide one request: ``(start, True)`` grants it at ``start`` (and records it in flight);
    ``(when, False)`` means ask again at ``when``.  Advances ``state``.
    """
    state.inflight = {k: v for k, v in state.inflight.items() if v > now}
    start = max(now, state.next_at, state.hold_until)
    if state.reset is not None and state.remaining is not None:
        if now >= state.reset + RESET_MARGIN:
            state.remaining, state.reset = None, None  # the announced window is over
        else:
            usable = state.remaining - reserve
            if usable < 1 or start >= state.reset:
                return state.reset + RESET_MARGIN, False
            state.remaining -= 1
            state.next_at = start + (state.reset - start) / usable
            state.inflight[slot_id] = start + lease
            return start, True
    # Unknown window: one probe, once every earlier request has answered.
    if state.inflight:
        return min(min(state.inflight.values()), now + POLL), False
    state.next_at = start
    state.inflight[slot_id] = start + lease
    return start, True


def fold(state: BudgetState, rh: RateHeaders | None, slot_id: str | None = None) -> None:
    """Fold one answer in: the slot is no longer in flight; the headers update the window.

    Requests still in flight are counted as spent in the announced window (the server may not have
    counted them yet).  Within the same window the lower estimate wins; a later reset is a new
    window; an older window's answer carries no news.
    """
    if slot_id is not None:
        state.inflight.pop(slot_id, None)
    if rh is None:
        return
    state.limit = rh.limit
    announced = float(max(0, rh.remaining - len(state.inflight)))
    if state.reset is None or state.remaining is None or rh.reset > state.reset + 0.5:
        state.remaining, state.reset = announced, rh.reset
    elif rh.reset >= state.reset - 0.5:
        state.remaining = min(state.remaining, announced)
        state.reset = max(state.reset, rh.reset)


@dataclass(frozen=True)
class Slot:
    """One granted request: pass it back to :meth:`RateBudget.observe` or :meth:`RateBudget.release`."""

    id: str
    waited: float


_SLOT_IDS = itertools.count()


def default_store(state_dir: str | os.PathLike[str] | None) -> SharedStore:
    return MemoryStore() if state_dir is None else FileStore(state_dir)


class RateBudget:
    """Pace the requests of one grant across threads, processes and (with a SQL store) hosts.

    :param key: identifies the grant; a hash, never a secret (it names a file or a row).
    :param state_dir: directory of a :class:`~clio2sf.sharedstate.FileStore` (one host); None keeps
        the state in memory (one process).  Ignored when ``store`` is given.
    :param store: the shared store (e.g. a :class:`~clio2sf.sharedstate.SqlStore` for every host).
    :param reserve: requests per window left unused as head room for other clients of the grant.
    :param lease: seconds a granted slot counts as in flight at most (a dead worker's slot).
    :param clock: time source (epoch seconds); injectable for tests.
    :param sleep: sleep function; injectable for tests.
    """

    def __init__(
        self,
        key: str,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        store: SharedStore | None = None,
        reserve: int = 0,
        lease: float = DEFAULT_LEASE,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not key or any(c in key for c in "/\\") or key.startswith("."):
            raise ValueError(f"RateBudget: key {key!r} must be a plain file name")
        self.key = key
        self.store = store if store is not None else default_store(state_dir)
        self.reserve = reserve
        self.lease = lease
        self.clock = clock
        self.sleep = sleep
        self.waited = 0.0
        self._tag = f"{os.uname().nodename[:16]}-{os.getpid()}-{id(self) & 0xFFFF:x}"

    def _update(self, fn: Callable[[BudgetState], Any]) -> Any:
        with self.store.transaction(self.key) as doc:
            state = BudgetState.from_doc(doc.get("budget"))
            out = fn(state)
            doc["budget"] = asdict(state)
        return out

    def acquire(self) -> Slot:
        """Block until this caller may send one request; the slot goes back with ``observe``/``release``."""
        slot_id = f"{self._tag}-{next(_SLOT_IDS)}"
        waited = 0.0
        while True:
            now = self.clock()
            when, granted = self._update(lambda st, now=now: grant(st, now, slot_id, reserve=self.reserve,
                                                                    lease=self.lease))
            delay = max(0.0, when - now)
            if delay > 0:
                self.sleep(delay)
                waited += delay
            if granted:
                self.waited += waited
                return Slot(slot_id, waited)

    def observe(self, headers: Mapping[str, str], slot: Slot | None = None) -> RateHeaders | None:
        """Fold a response's rate-limit headers in and give its slot back."""
        rh = parse_rate_headers(headers)
        if rh is None and slot is None:
            return None
        self._update(lambda st: fold(st, rh, slot.id if slot else None))
        return rh

    def release(self, slot: Slot) -> None:
        """Give back the slot of a request that got no answer (it still counts in its window)."""
        self._update(lambda st: fold(st, None, slot.id))

    def penalize(self, seconds: float) -> None:
        """Hold every worker of this grant for ``seconds`` (a 429's Retry-After)."""

        def hold(st: BudgetState) -> None:
            st.hold_until = max(st.hold_until, self.clock() + max(0.0, seconds))
            if st.reset is not None:
                st.remaining = 0.0

        self._update(hold)

    def snapshot(self) -> dict[str, Any]:
        """Return the current shared budget (for logs and tests)."""
        return self._update(asdict)


class TokenCache:
    """The grant's current access token, shared through the store, encrypted at rest.

    :param store: the shared store; :param key: the grant's key (same as the budget's);
    :param secret: key material only the connection's holders know (client secret + refresh token).
    """

    def __init__(self, store: SharedStore, key: str, secret: str, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        from cryptography.fernet import Fernet

        self.store, self.key, self.clock, self.sleep = store, key, clock, sleep
        digest = hashlib.sha256(b"clio2sf-token-cache|" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._tag = f"{os.uname().nodename[:16]}-{os.getpid()}-{threading.get_ident()}"

    def _decrypt(self, entry: Mapping[str, Any]) -> str | None:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(str(entry.get("ct", "")).encode()).decode()
        except (InvalidToken, ValueError):
            return None

    def get(self, refresh: Callable[[], tuple[str, float]], *, margin: float = 60.0, lease: float = 90.0
            ) -> tuple[str, float]:
        """Return ``(access token, expires_at)``: the cached one, or one ``refresh()`` fetched.

        Only one worker of the grant refreshes at a time (a lease of ``lease`` seconds); the others
        wait for its token.  ``refresh`` returns ``(token, expires_at)`` or raises.
        """
        while True:
            now = self.clock()
            with self.store.transaction(self.key) as doc:
                entry = doc.get("token") or {}
                token = self._decrypt(entry) if entry.get("ct") else None
                if token and float(entry.get("expires_at", 0)) - margin > now:
                    return token, float(entry["expires_at"])
                busy = entry.get("refreshing") and float(entry.get("refreshing_until", 0)) > now
                if not busy:
                    doc["token"] = {"refreshing": self._tag, "refreshing_until": now + lease}
            if busy:
                self.sleep(POLL * 2)
                continue
            try:
                token, expires_at = refresh()
            except BaseException:
                with self.store.transaction(self.key) as doc:
                    if (doc.get("token") or {}).get("refreshing") == self._tag:
                        doc.pop("token", None)
                raise
            with self.store.transaction(self.key) as doc:
                doc["token"] = {"ct": self._fernet.encrypt(token.encode()).decode(), "expires_at": expires_at}
            return token, expires_at

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (Clio refused it) unless another worker already replaced it."""
        with self.store.transaction(self.key) as doc:
            entry = doc.get("token") or {}
            if entry.get("ct") and self._decrypt(entry) == token:
                doc.pop("token", None)
