"""Local emulator of the Clio Manage API v4 (``python -m sandbox.clio serve``)."""
