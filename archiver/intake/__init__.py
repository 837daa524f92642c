"""The webhook intake: an ASGI app that stores each provider event durably, then enqueues work."""
