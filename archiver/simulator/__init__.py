"""A provider simulator: a real HTTP server with in-memory state that behaves like the providers
(docs/providers.md), with fault injection, a controllable clock and an audit log of every request.

* ``state``: the resources, the clock and the audit log.
* ``faults``: rules that make the API answer 429 / 5xx or slowly.
* ``app``: the Bandwidth API routes and the ``/admin`` API (token-protected).
* ``webhooks``: delivering the providers' callbacks to an intake.
"""
