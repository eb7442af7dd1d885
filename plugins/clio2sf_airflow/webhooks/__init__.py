"""Clio webhooks: the receiver (a FastAPI app the api-server serves) and the subscriptions."""
