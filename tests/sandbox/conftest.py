"""Fixtures shared by the Clio sandbox's HTTP tests (each module starts its own sandbox as ``clio``)."""

from __future__ import annotations

import pytest
import requests
from openapi_core import Config, OpenAPI

from sandbox.clio.spec import load_spec, with_nullable


@pytest.fixture(scope="module")
def http(clio) -> requests.Session:
    """A session with a fresh access token of the module's sandbox."""
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {clio.access_token()}"
    return s


@pytest.fixture(scope="session")
def openapi() -> OpenAPI:
    """The official Clio spec (clio-cli 1.0.5), every typed schema nullable, for openapi-core."""
    return OpenAPI.from_dict(with_nullable(load_spec()), config=Config(spec_validator_cls=None))
