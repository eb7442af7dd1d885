"""Pieces both sandboxes share (the seeded firm's staff roster)."""
