"""Unit tests: no service, no process of the stack (a clock or an httpx.MockTransport at most)."""
