"""Discover phase, pure logic: estimates, capacity pre-flight, the mapping document, reference exports."""

from __future__ import annotations

from clio2sf.discovery.document import mapping_document
from clio2sf.discovery.estimates import Finding, capacity_check, estimates, salesforce_targets
from clio2sf.discovery.outputs import write_discovery_outputs
from clio2sf.discovery.reference import reference_exports

__all__ = [
    "Finding",
    "capacity_check",
    "estimates",
    "mapping_document",
    "reference_exports",
    "salesforce_targets",
    "write_discovery_outputs",
]
