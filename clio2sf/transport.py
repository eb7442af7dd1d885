"""Transport safety rules every hook applies: HTTPS except on the loopback, TLS verification on.

Pure functions (no Airflow import): the hooks call them on their connection's URLs and extras.

* :func:`check_url` refuses ``http://`` unless the host is a loopback address (``localhost``,
  ``127.0.0.0/8``, ``::1``), where the local sandboxes run; any other scheme is refused too.
* :func:`tls_verify` turns the ``verify``/``ca_bundle`` extras into a ``requests`` ``verify``
  value.  Verification can only be switched off together with the explicit extra
  ``insecure_skip_tls_verify: true``, and then a warning is logged on every hook start.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

#: The connection extra that must be ``true`` for ``verify: false`` to be honoured.
INSECURE_OPT_IN = "insecure_skip_tls_verify"
_FALSE = {"false", "0", "no", "off", "n"}
_TRUE = {"true", "1", "yes", "on", "y"}


class InsecureTransportError(ValueError):
    """A connection asks for plain HTTP or unverified TLS without the explicit opt-in."""


def is_loopback(host: str | None) -> bool:
    """Tell whether ``host`` names the loopback (``localhost`` or a loopback IP)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> str:
    """Return ``url`` if it is ``https://`` (or ``http://`` to a loopback host); refuse otherwise."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return url
    if parts.scheme == "http":
        raise InsecureTransportError(
            f"{what}: {parts.scheme}://{parts.hostname} is plain HTTP; only loopback hosts may use http:// "
            "(use https://)"
        )
    raise InsecureTransportError(f"{what}: {url.split('?')[0]!r} is not an https:// URL")


def _flag(value: Any) -> bool | None:
    """True/False for a bool-ish extra (bool, 0/1, "true"/"false", ...); None when not bool-ish."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _FALSE | _TRUE:
        return value.strip().lower() in _TRUE
    return None


def tls_verify(extras: dict[str, Any], what: str, log: logging.Logger | Any = None) -> bool | str:
    """The ``requests`` ``verify`` value from a connection's extras (``ca_bundle``, ``verify``).

    ``ca_bundle`` (a path) wins; ``verify`` may be a bool-ish value or a CA bundle path.  A false
    ``verify`` is refused unless ``insecure_skip_tls_verify`` is true; with the opt-in it is
    honoured and a warning naming the connection is logged.
    """
    def get(name: str) -> Any:
        value = extras.get(name)
        return None if value in (None, "") else value

    bundle = get("ca_bundle")
    if bundle:
        return str(bundle)
    raw = get("verify")
    if raw is None:
        return True
    flag = _flag(raw)
    if flag is None:
        if isinstance(raw, str):
            return raw  # a CA bundle path
        raise InsecureTransportError(f"{what}: extra verify={raw!r} is neither a boolean nor a CA bundle path")
    if flag:
        return True
    if _flag(get(INSECURE_OPT_IN)) is not True:
        raise InsecureTransportError(
            f"{what}: extra verify={raw!r} would switch TLS certificate verification off; refused. Give the "
            f"server's CA in extra ca_bundle instead, or (never in production) add {INSECURE_OPT_IN}: true"
        )
    (log or logging.getLogger(__name__)).warning(
        "%s: TLS CERTIFICATE VERIFICATION IS OFF (%s: true): the connection can be intercepted; "
        "never use this in production", what, INSECURE_OPT_IN)
    return False
