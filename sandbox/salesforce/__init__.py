"""A local HTTPS Salesforce org emulator for tests, demos and benchmarks.

Start it with ``python -m sandbox.salesforce serve``; from tests use
:func:`sandbox.salesforce.testing.run_sf_sandbox`.
"""
