"""The archive pipeline as plain services; Celery tasks in ``workers/`` are thin wrappers over them.

* ``context``: what every step needs (database, clock, S3, provider client, dispatcher).
* ``dispatch``: the steps, and how an item's state names its next one.
* ``leases``: claiming an item for one step, so duplicates and redeliveries do nothing harmful.
* ``retry``: the declarative retry policy (what to do with each kind of failure).
* ``steps``: the flat runner (claim, then work and commit in a loop) and each step's work:
  archive, archive a later transcription, request deletion, confirm purge.
* ``transitions``: what a step's work found, as values, and what committing each does.
* ``sweeper``: re-enqueues items whose step is due or whose lease expired.
* ``events``: recording accepted webhooks (one, or an intake's batch) with their items.
* ``items``: what an event asks of its item, and creating or waking the item idempotently.
* ``handlers/``: one module per artifact kind (archive, delete, confirm purge), listed in
  ``handlers/__init__.py``.
* ``accounts``: paused provider accounts (refused credentials): their items wait, none is at fault.
* ``retention``: recordings near the provider's own deletion.
* ``twilio_requests``: asking Twilio for a transcript, and tracking it to its archive.
"""
