"""Clio Manage API v4 hook: OAuth refresh, pacing, typed errors, retries, paging, downloads."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity
from airflow.sdk import BaseHook
from requests.exceptions import ChunkedEncodingError, ConnectionError, Timeout

from clio2sf import transport
from clio2sf.ratebudget import RateBudget, Slot, TokenCache, retry_after_seconds
from clio2sf.sharedstate import FileStore, SharedStore, SqlStore
from clio2sf_airflow.migration import connection_exists

DEFAULT_API_VERSION = "4.0.9"
DEFAULT_TIMEOUT = 60.0
#: Refresh this long before the announced expiry, so a long page never starts on a dying token.
EXPIRY_MARGIN = 60.0
_CHUNK = 64 * 1024
#: The connection whose database holds every grant's shared budget and token when it exists.
DEFAULT_STATE_CONN_ID = "clio2sf_state"


class ClioError(Exception):
    """Base class of the hook's errors; messages never carry tokens or record bodies."""


class ClioAuthError(ClioError):
    """The refresh token (or client credentials) was rejected: a human must re-authorise."""


class ClioRateLimited(ClioError):
    """HTTP 429; ``retry_after`` holds the server's Retry-After in seconds (or None)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClioServerError(ClioError):
    """HTTP 5xx (or a 2xx whose body is not JSON): retried."""


class ClioBadRequest(ClioError):
    """A 4xx other than 401/429 (bad fields, unknown endpoint, retired version): not retried."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _TokenExpired(ClioError):
    """Internal: the access token was refused (401 invalid_token); refresh and resend."""


_TRANSIENT = (ClioRateLimited, ClioServerError, ConnectionError, Timeout, ChunkedEncodingError, _TokenExpired)


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"https": 443, "http": 80}.get(parts.scheme)


class ClioHook(BaseHook):
    """Talk to Clio Manage API v4 with its own ``requests.Session``.

    This is deliberately a ``BaseHook`` and not an ``HttpHook`` subclass: ``HttpHook`` turns every
    unknown key of the connection extras into an HTTP header, so ``refresh_token`` or ``token_url``
    would be sent to Clio (and to every redirect target) as headers.

    Connection (conn type ``http``): host = base URL (``https://app.clio.com`` or the sandbox
    ``http://127.0.0.1:8701``; a bare host uses ``schema`` as scheme, ``https`` by default; ``port``
    is honoured), login = OAuth client id, password = client secret, extras ``refresh_token``
    (required), ``token_url`` (default ``<base>/oauth/token``), ``api_version`` (default 4.0.9),
    ``ca_bundle`` or ``verify`` (true or a CA path; ``false`` only with ``insecure_skip_tls_verify: true``,
    logged as a warning), ``timeout`` (seconds),
    ``rate_store_conn_id``, ``rate_state_dir``.  ``http://`` is refused except on the loopback
    (:mod:`clio2sf.transport`).

    **One budget and one access token per grant** (base URL + client id + refresh token), shared
    by every task that uses the grant, through a :mod:`clio2sf.sharedstate` store:

    * the SQL database of the connection ``rate_store_conn_id`` (extra), else
      ``$CLIO2SF_RATE_STORE_CONN_ID``, else ``clio2sf_state`` when that connection exists
      (conn type ``postgres``, ``mysql`` or ``sqlite``): every worker on every host;
    * otherwise a lock file per grant in ``rate_state_dir`` (default ``$CLIO2SF_RATE_DIR`` or
      ``<tmp>/clio2sf-rate``): every process on this host (LocalExecutor).

    Every API request first takes a slot from :class:`clio2sf.ratebudget.RateBudget` and feeds
    the response's rate headers back; the access token comes from
    :class:`clio2sf.ratebudget.TokenCache` (one refresh for all workers).  A 429's ``Retry-After``
    holds every worker of the grant and the request is retried once it has passed; 5xx and
    dropped connections are retried with exponential backoff and jitter; 401 ``invalid_token``
    drops the shared token and refreshes once per attempt.

    Counters: ``requests_made`` (API requests sent to Clio: what its rate limit counts),
    ``token_requests`` (``/oauth/token`` calls), ``storage_downloads`` (document bytes fetched from
    the presigned storage URL, which is not a Clio API request).

    :param clio_conn_id: the connection id.
    :param max_attempts: attempts per request (tenacity ``stop_after_attempt``).
    :param retry_wait: tenacity wait strategy; tests pass ``tenacity.wait_none()``.
    :param budget: a ready :class:`RateBudget` (tests); default built from the connection.
    """

    conn_name_attr = "clio_conn_id"
    default_conn_name = "clio_default"
    conn_type = "http"
    hook_name = "Clio"

    def __init__(
        self,
        clio_conn_id: str = default_conn_name,
        *,
        max_attempts: int = 8,
        retry_wait: tenacity.wait.wait_base | None = None,
        budget: RateBudget | None = None,
    ) -> None:
        super().__init__()
        self.clio_conn_id = clio_conn_id
        self.max_attempts = max_attempts
        self.retry_wait = retry_wait or tenacity.wait_exponential_jitter(initial=1, max=60, jitter=2)
        self._budget = budget
        self._access_token: str | None = None
        self._expires_at = 0.0
        self.requests_made = 0
        self.token_requests = 0
        self.storage_downloads = 0
        self._count_lock = threading.Lock()

    # ------------------------------------------------------------------ connection

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.clio_conn_id)

    def _get_field(self, name: str, default: Any = None) -> Any:
        """Read one connection extra; blank UI fields count as unset."""
        value = self.connection.extra_dejson.get(name)
        return default if value in (None, "") else value

    @cached_property
    def base_url(self) -> str:
        conn = self.connection
        host = (conn.host or "").strip().rstrip("/")
        if not host:
            raise ClioAuthError(f"connection {self.clio_conn_id!r}: host (Clio base URL) is empty")
        if "://" not in host:
            host = f"{conn.schema or 'https'}://{host}"
        parts = urlsplit(host)
        netloc = parts.netloc
        if conn.port and parts.port is None:
            netloc = f"{netloc}:{conn.port}"
        return self._checked_url(f"{parts.scheme}://{netloc}{parts.path}".rstrip("/"), "host")

    def _checked_url(self, url: str, what: str) -> str:
        """``url`` if HTTPS (or HTTP on the loopback); a config error naming the connection otherwise."""
        try:
            return transport.check_url(url, f"connection {self.clio_conn_id!r} {what}")
        except transport.InsecureTransportError as exc:
            raise ClioAuthError(str(exc)) from None

    @cached_property
    def token_url(self) -> str:
        return self._checked_url(self._get_field("token_url") or f"{self.base_url}/oauth/token", "token_url")

    @cached_property
    def api_version(self) -> str:
        return str(self._get_field("api_version", DEFAULT_API_VERSION))

    @cached_property
    def timeout(self) -> float:
        return float(self._get_field("timeout", DEFAULT_TIMEOUT))

    @cached_property
    def verify(self) -> bool | str:
        """TLS verification (``ca_bundle``/``verify`` extras); off only with ``insecure_skip_tls_verify``."""
        try:
            return transport.tls_verify(self.connection.extra_dejson, f"connection {self.clio_conn_id!r}", self.log)
        except transport.InsecureTransportError as exc:
            raise ClioAuthError(str(exc)) from None

    @cached_property
    def _credentials(self) -> tuple[str, str, str]:
        conn = self.connection
        refresh = self._get_field("refresh_token")
        missing = [n for n, v in (("login", conn.login), ("password", conn.password), ("extra.refresh_token", refresh)) if not v]
        if missing:
            raise ClioAuthError(f"connection {self.clio_conn_id!r} lacks {', '.join(missing)}")
        for secret in (conn.password, refresh):
            _mask(secret)
        return conn.login, conn.password, refresh

    @cached_property
    def grant_key(self) -> str:
        """Names this grant's shared budget and token (a hash: never a secret)."""
        client_id, _secret, refresh = self._credentials
        return "clio-" + hashlib.sha256(f"{self.base_url}|{client_id}|{refresh}".encode()).hexdigest()[:24]

    @cached_property
    def shared_store(self) -> SharedStore:
        """Where this grant's budget and token live (see the class docstring)."""
        if self._budget is not None:
            return self._budget.store
        conn_id = self._get_field("rate_store_conn_id") or os.environ.get("CLIO2SF_RATE_STORE_CONN_ID")
        if conn_id or connection_exists(DEFAULT_STATE_CONN_ID):
            conn_id = conn_id or DEFAULT_STATE_CONN_ID
            store = SqlStore(state_store_url(self.get_connection(conn_id)))
            self.log.info("Clio budget and token of this grant shared through connection %r", conn_id)
            return store
        state_dir = self._get_field("rate_state_dir") or os.environ.get("CLIO2SF_RATE_DIR") or os.path.join(
            tempfile.gettempdir(), "clio2sf-rate"
        )
        return FileStore(state_dir)

    @property
    def budget(self) -> RateBudget:
        if self._budget is None:
            self._budget = RateBudget(self.grant_key, store=self.shared_store, lease=self.timeout + 30)
        return self._budget

    @cached_property
    def tokens(self) -> TokenCache:
        """The grant's shared access token (encrypted in the store with the connection's secrets)."""
        _client_id, secret, refresh = self._credentials
        return TokenCache(self.shared_store, self.grant_key, f"{secret}|{refresh}")

    def get_conn(self) -> requests.Session:
        """Return the hook's session (no credentials are stored on it)."""
        return self.session

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Accept"] = "application/json"
        # Do not pick up ~/.netrc credentials: the Bearer header is the only auth we send.
        session.trust_env = False
        return session

    # ------------------------------------------------------------------ auth

    def _redact(self, text: str) -> str:
        secrets = [self._access_token]
        conn = self.__dict__.get("connection")
        if conn is not None:
            secrets += [conn.password, conn.extra_dejson.get("refresh_token")]
        for secret in secrets:
            if secret:
                text = text.replace(str(secret), "***")
        return text

    def _refresh_token(self) -> tuple[str, float]:
        """Ask Clio for a new access token: ``(token, expires_at)``."""
        client_id, secret, refresh = self._credentials
        with self._count_lock:
            self.token_requests += 1
        resp = self.session.post(
            self.token_url,
            data={"grant_type": "refresh_token", "refresh_token": refresh, "client_id": client_id, "client_secret": secret},
            headers={"Accept": "application/json"},
            timeout=self.timeout,
            verify=self.verify,
        )
        if resp.status_code >= 500:
            raise ClioServerError(f"token refresh at {self.token_url}: HTTP {resp.status_code}")
        if resp.status_code == 429:
            raise ClioRateLimited(f"token refresh at {self.token_url}: HTTP 429", retry_after_seconds(resp.headers))
        body = _json_or_none(resp)
        if resp.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            code = body.get("error") if isinstance(body, dict) else None
            raise ClioAuthError(
                f"Clio refused the refresh token at {self.token_url} (HTTP {resp.status_code}"
                f"{', ' + str(code) if code else ''}); re-authorise the app and update connection "
                f"{self.clio_conn_id!r}"
            )
        _mask(body["access_token"])
        if body.get("refresh_token") and body["refresh_token"] != refresh:
            # Manage does not rotate refresh tokens; if it ever does, the connection must be updated.
            self.log.warning("Clio returned a new refresh token; update connection %r", self.clio_conn_id)
        return body["access_token"], time.time() + float(body.get("expires_in") or 3600)

    def _token(self) -> str:
        if self._access_token is None or time.time() >= self._expires_at - EXPIRY_MARGIN:
            self._access_token, self._expires_at = self.tokens.get(
                self._refresh_token, margin=EXPIRY_MARGIN, lease=self.timeout + 30)
            _mask(self._access_token)
        return self._access_token  # type: ignore[return-value]

    def _drop_token(self, token: str) -> None:
        """Clio refused ``token``: forget it here and in the shared cache."""
        self._access_token = None
        self.tokens.invalidate(token)

    # ------------------------------------------------------------------ requests

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            # e.g. a paging link from a response: the Bearer token goes to the Clio host only
            if _origin(path_or_url) != _origin(self.base_url):
                raise ClioBadRequest(f"refusing to send the Clio token to {urlsplit(path_or_url).netloc!r}: "
                                     f"not the connection's host", 400)
            return path_or_url
        path = path_or_url.lstrip("/")
        if not path.startswith("api/v4/"):
            path = f"api/v4/{path}"
        base_path, _, query = path.partition("?")
        if not base_path.endswith(".json"):
            base_path += ".json"
        return f"{self.base_url}/{base_path}" + (f"?{query}" if query else "")

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """A 429 with ``Retry-After`` waits in the shared budget (every worker holds); others back off."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ClioRateLimited) and exc.retry_after is not None:
            return 0.0
        return self.retry_wait(state)

    def _retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_TRANSIENT),
            wait=self._wait,
            stop=tenacity.stop_after_attempt(self.max_attempts),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "Clio request retry %d/%d after %s: %s",
            state.attempt_number, self.max_attempts, type(exc).__name__, self._redact(str(exc)),
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        json: Any,
        allow_redirects: bool = True,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one API request once: pace, authenticate, classify the status."""
        token = self._token()
        slot: Slot = self.budget.acquire()
        with self._count_lock:
            self.requests_made += 1
        try:
            resp = self.session.request(
                method, url, params=params, json=json,
                headers={**(headers or {}), "Authorization": f"Bearer {token}", "X-API-VERSION": self.api_version},
                timeout=self.timeout, verify=self.verify, allow_redirects=allow_redirects, stream=stream,
            )
        except (ConnectionError, Timeout) as exc:
            self.budget.release(slot)
            raise type(exc)(self._redact(f"{method} {url.split('?')[0]}: {exc}")) from None
        except BaseException:
            self.budget.release(slot)
            raise
        self.budget.observe(resp.headers, slot)
        endpoint = f"{method} {url.split('?')[0]}"
        status = resp.status_code
        if status == 401:
            body = _json_or_none(resp)
            self._drop_token(token)
            if isinstance(body, dict) and body.get("error") == "invalid_token":
                raise _TokenExpired(f"{endpoint}: access token expired or revoked")
            raise _TokenExpired(f"{endpoint}: HTTP 401")
        if status == 429:
            retry_after = retry_after_seconds(resp.headers)
            if retry_after is not None:
                self.budget.penalize(retry_after)
            raise ClioRateLimited(f"{endpoint}: HTTP 429 (Retry-After {retry_after})", retry_after)
        if status >= 500:
            raise ClioServerError(f"{endpoint}: HTTP {status}")
        if status >= 400:
            raise ClioBadRequest(_bad_request_message(endpoint, status, params, _json_or_none(resp)), status)
        return resp

    def request(
        self, method: str, path_or_url: str, params: Mapping[str, Any] | None = None, json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        """Send an API request with retries; return ``(json body or None, headers)``.

        ``headers``: extra request headers (e.g. ``X-Hook-Secret`` for a webhook activation).
        """
        url = self._url(path_or_url)

        def attempt() -> tuple[Any, Mapping[str, str]]:
            resp = self._send(method, url, params=params, json=json, headers=headers)
            if not resp.content:
                return None, resp.headers
            body = _json_or_none(resp)
            if body is None:
                raise ClioServerError(f"{method} {url.split('?')[0]}: HTTP {resp.status_code} body is not JSON")
            return body, resp.headers

        try:
            return self._retrying()(attempt)
        except _TokenExpired as exc:
            raise ClioAuthError(f"{exc} after {self.max_attempts} attempts") from None

    def get_page(self, url_or_path: str, params: Mapping[str, Any] | None = None) -> tuple[dict, Mapping[str, str]]:
        """Fetch one page (the ``fetch`` callable of :func:`clio2sf.extract.extract_object`)."""
        return self.request("GET", url_or_path, params=params)

    def paginate(
        self,
        endpoint: str,
        fields: str,
        params: Mapping[str, Any] | None = None,
        updated_since: str | None = None,
    ) -> Iterator[dict]:
        """Yield every page of a cursor-paged listing, following ``meta.paging.next`` as given.

        ``params`` should carry ``order=id(asc)`` where the endpoint takes ``order`` (a catalog
        entry's ``list_params``): Clio cursor-pages only in id order.
        """
        query: dict[str, Any] = {"limit": 200, "fields": fields, **(params or {})}
        if updated_since:
            query["updated_since"] = updated_since
        body, _ = self.get_page(endpoint, query)
        while True:
            yield body
            nxt = ((body or {}).get("meta") or {}).get("paging", {}).get("next")
            if not nxt:
                return
            body, _ = self.get_page(nxt, None)

    def who_am_i(self) -> dict:
        """Return the authorised user (``users/who_am_i``)."""
        body, _ = self.request("GET", "users/who_am_i", params={"fields": "id,name,email"})
        return body["data"]

    def test_connection(self) -> tuple[bool, str]:
        """Check the credentials by asking who the token belongs to."""
        try:
            user = self.who_am_i()
        except Exception as exc:
            return False, self._redact(f"{type(exc).__name__}: {exc}")
        return True, f"Connected to Clio as user {user.get('id')}"

    # ------------------------------------------------------------------ downloads

    def _download_location(self, doc_id: Any, version_id: Any) -> str:
        url = self._url(f"documents/{doc_id}/download")
        params = {"document_version_id": version_id} if version_id is not None else None

        def attempt() -> str:
            resp = self._send("GET", url, params=params, json=None, allow_redirects=False)
            location = resp.headers.get("Location")
            if resp.status_code not in (301, 302, 303, 307, 308) or not location:
                raise ClioServerError(f"GET {url}: expected a 303 redirect, got HTTP {resp.status_code}")
            return location

        return self._retrying()(attempt)

    def download_document(self, doc_id: Any, version_id: Any = None) -> Iterator[bytes]:
        """Stream a document version's bytes.

        The API answers 303 to a presigned storage URL, fetched **without** the Authorization
        header.  A connection dropped mid-body is resumed by downloading again and skipping the
        bytes already yielded, within ``max_attempts``.
        """
        sent = 0
        for attempt in range(1, self.max_attempts + 1):
            location = self._download_location(doc_id, version_id)
            try:
                with self._count_lock:
                    self.storage_downloads += 1
                # the hook's session (no ~/.netrc, no proxy variables), without the Authorization header
                url = self._checked_url(location, f"document {doc_id} download URL")
                with self.session.get(url, stream=True, timeout=self.timeout, verify=self.verify) as resp:
                    if resp.status_code >= 500 or resp.status_code == 429:
                        raise ClioServerError(f"document {doc_id}: storage answered HTTP {resp.status_code}")
                    if resp.status_code >= 400:
                        raise ClioBadRequest(f"document {doc_id}: storage answered HTTP {resp.status_code}", resp.status_code)
                    skip = sent
                    for chunk in resp.iter_content(_CHUNK):
                        if skip:
                            if len(chunk) <= skip:
                                skip -= len(chunk)
                                continue
                            chunk, skip = chunk[skip:], 0
                        sent += len(chunk)
                        yield chunk
                return
            except (ClioServerError, ConnectionError, Timeout, ChunkedEncodingError) as exc:
                if attempt == self.max_attempts:
                    raise ClioServerError(
                        f"document {doc_id}: download failed after {attempt} attempts ({type(exc).__name__})"
                    ) from None
                self.log.warning("document %s: download interrupted after %d bytes, retrying", doc_id, sent)
                state = tenacity.RetryCallState(self._retrying(), None, (), {})
                state.attempt_number = attempt
                wait = self.retry_wait(state)
                if wait:
                    time.sleep(wait)




def state_store_url(conn: Any) -> str:
    """The SQLAlchemy URL of a ``postgres``/``mysql``/``sqlite`` connection (the shared-state store)."""
    from sqlalchemy.engine import URL

    kind = (conn.conn_type or "").lower()
    if kind == "sqlite":
        if not conn.host:
            raise ClioError(f"connection {conn.conn_id!r}: host must be the SQLite file's path")
        return f"sqlite:///{conn.host}"
    drivers = {"postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2", "mysql": "mysql+mysqldb"}
    if kind not in drivers:
        raise ClioError(f"connection {conn.conn_id!r}: conn type {kind!r} cannot hold the shared Clio budget "
                        f"(use postgres, mysql or sqlite)")
    url = URL.create(drivers[kind], username=conn.login or None, password=conn.password or None,
                     host=conn.host or None, port=conn.port or None, database=conn.schema or None)
    return url.render_as_string(hide_password=False)


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _bad_request_message(endpoint: str, status: int, params: Mapping[str, Any] | None, body: Any) -> str:
    """Name the endpoint, the requested fields and Clio's error type; never the body."""
    parts = [f"{endpoint}: HTTP {status}"]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts.append(f"{error.get('type')}: {str(error.get('message'))[:200]}")
    elif isinstance(error, str):
        parts.append(error)
    if params and params.get("fields"):
        parts.append(f"fields={params['fields']}")
    return "; ".join(parts)


def _mask(secret: str | None) -> None:
    """Register a secret with Airflow's log masker (a no-op outside a task is fine)."""
    if not secret or len(secret) < 5:
        return
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except Exception:  # masking is best effort; never fail a request over it
        logging.getLogger(__name__).debug("could not register a secret with the log masker")
