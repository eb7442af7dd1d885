"""Size presets and runtime knobs of the Clio sandbox."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

#: Matters per preset; every other collection scales from it (see firm.RATIOS).
PRESETS: dict[str, int] = {"tiny": 12, "demo": 120, "large": 4000, "xl": 40000}

CLIENT_ID = "clio-sandbox-client"
REDIRECT_URI = "http://127.0.0.1/oauth/callback"
DEFAULT_VERSION = "4.0.9"
KNOWN_VERSIONS = tuple(f"4.0.{i}" for i in range(0, 14))


@dataclass
class Knobs:
    """Everything that can change at runtime via ``POST /_admin/knobs``.

    ``rate_limit`` None switches limiting off.  ``limit_schedule`` is a list of
    ``[epoch_seconds, limit]`` switches (the latest one not in the future is in force), a test
    knob; ``offpeak_limit``/``peak_hours``/``tz`` model Clio's weekday peak hours.
    ``fault_429_storm`` is ``"EVERY:LENGTH"``: of every EVERY API requests the first LENGTH get 429.
    ``revoke_after`` revokes the access token that makes that many API requests.
    ``webhook_*``: deliveries (see :mod:`sandbox.clio.webhooks`): the fault knob (``"drop:N"``,
    ``"dup:N"``), retry base delay and count, request timeout, and the CA bundle that verifies
    the receivers' TLS certificates (default: the system's).
    """

    rate_limit: int | None = 50
    window: float = 60.0
    token_ttl: float = 3600.0
    fault_5xx: float = 0.0
    fault_429_storm: str | None = None
    latency_ms: float = 0.0
    drop_rate: float = 0.0
    revoke_after: int | None = None
    offpeak_limit: int | None = None
    peak_hours: str = "04-19"
    tz: str = "America/Los_Angeles"
    limit_schedule: list[list[float]] = field(default_factory=list)
    webhook_fault: str | None = None
    webhook_retry_base: float = 1.0
    webhook_max_retries: int = 5
    webhook_timeout: float = 5.0
    webhook_ca_bundle: str | None = None

    def update(self, changes: dict) -> None:
        """Apply a partial update; unknown names raise KeyError naming them."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise KeyError(f"unknown knob(s) {unknown}; known: {sorted(names)}")
        for key, value in changes.items():
            setattr(self, key, value)

    def as_dict(self) -> dict:
        return asdict(self)
