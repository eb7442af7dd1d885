"""Hooks: one module per service (``clio``, ``salesforce``)."""
