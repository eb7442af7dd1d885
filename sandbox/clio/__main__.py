"""Command line: ``python -m sandbox.clio serve|seed|token``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sandbox.clio.config import PRESETS, Knobs
from sandbox.clio.server import DB_NAME, credentials, open_store, prepare, serve


def _firm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    p.add_argument("--matters", type=int, default=None, help="explicit number of matters (overrides --preset)")
    p.add_argument("--dirty-rate", type=float, default=0.0, help="share of records given a realistic defect")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.clio", description="Clio Manage API v4 sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="seed if needed, then serve")
    _firm_args(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8701)
    s.add_argument("--rate-limit", type=int, default=50)
    s.add_argument("--no-rate-limit", action="store_true")
    s.add_argument("--window", type=float, default=60.0, help="rate-limit window in seconds")
    s.add_argument("--token-ttl", type=float, default=3600.0, help="access token lifetime in seconds")
    s.add_argument("--fault-5xx", type=float, default=0.0, help="share of API requests answered 503")
    s.add_argument("--fault-429-storm", default=None, metavar="EVERY:LENGTH",
                   help="the last LENGTH of every EVERY API requests get 429")
    s.add_argument("--latency-ms", type=float, default=0.0)
    s.add_argument("--drop-rate", type=float, default=0.0, help="share of GET pages cut mid-transfer")
    s.add_argument("--revoke-after", type=int, default=None, help="revoke a token after N API requests")
    s.add_argument("--offpeak-limit", type=int, default=None, help="limit outside weekday peak hours")
    s.add_argument("--peak-hours", default="04-19", help="HH-HH, weekdays, in --tz")
    s.add_argument("--tz", default="America/Los_Angeles")
    s.add_argument("--ready-file", type=Path, default=None, help="write {\"port\": N} here once listening")
    g = sub.add_parser("seed", help="generate the firm only")
    _firm_args(g)
    t = sub.add_parser("token", help="print the OAuth client and the pre-authorised refresh token")
    t.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "token":
        if not (args.data_dir / DB_NAME).exists():
            parser.error(f"{args.data_dir} holds no sandbox yet: run `seed` or `serve` with it first")
        print(json.dumps(credentials(open_store(args.data_dir)), indent=2))
    elif args.command == "seed":
        store = prepare(args.data_dir, args.seed, args.preset, args.matters, args.dirty_rate)
        print(store.meta("seeded"))
    else:
        knobs = Knobs(rate_limit=None if args.no_rate_limit else args.rate_limit, window=args.window,
                      token_ttl=args.token_ttl, fault_5xx=args.fault_5xx, fault_429_storm=args.fault_429_storm,
                      latency_ms=args.latency_ms, drop_rate=args.drop_rate, revoke_after=args.revoke_after,
                      offpeak_limit=args.offpeak_limit, peak_hours=args.peak_hours, tz=args.tz)
        print(f"Clio sandbox on http://{args.host}:{args.port} (data: {args.data_dir})", flush=True)
        serve(args.data_dir, args.host, args.port, args.seed, knobs, args.preset, args.matters, args.dirty_rate,
              args.ready_file)


if __name__ == "__main__":
    main()
