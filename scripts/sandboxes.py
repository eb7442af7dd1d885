"""Start both sandboxes with the demo firm and print the env vars that reach them.

``make sandboxes`` runs this in the foreground (Ctrl-C stops both). Paste the printed
``export`` lines into the shell that runs ``make standalone`` so the connections in
airflow_settings.yaml resolve to the sandboxes.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=str(ROOT / ".sandboxes"))
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--window", type=float, default=60.0, help="Clio rate-limit window in seconds")
    args = parser.parse_args(argv)

    from sandbox.clio.testing import run_clio_sandbox
    from sandbox.salesforce.testing import run_sf_sandbox

    data = Path(args.data_dir)
    with ExitStack() as stack:
        clio = stack.enter_context(
            run_clio_sandbox(data / "clio", seed=42, preset=args.preset, rate_limit=50, window=args.window)
        )
        sf = stack.enter_context(run_sf_sandbox(data / "salesforce", seed=42))
        domain = sf.instance_url.removeprefix("https://") + "/services/oauth2/token?"
        print("# Clio and Salesforce sandboxes are up. In the shell that runs `make standalone`:")
        print(f"export CLIO_BASE_URL={clio.base_url}")
        print(f"export CLIO_CLIENT_ID={clio.client_id}")
        print(f"export CLIO_CLIENT_SECRET={clio.client_secret}")
        print(f"export CLIO_REFRESH_TOKEN={clio.refresh_token}")
        print(f"export SF_CONSUMER_KEY={sf.consumer_key}")
        print(f"export SF_CONSUMER_SECRET={sf.consumer_secret}")
        print(f"export SF_DOMAIN='{domain}'")
        print(f"export REQUESTS_CA_BUNDLE={sf.ca_bundle}")
        print(f"export CLIO2SF_STAGING_ROOT=file://{ROOT / '.staging'}")
        print("# Ctrl-C stops both sandboxes.", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
