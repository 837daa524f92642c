"""The archive pipeline as plain services; Celery tasks in ``workers/`` are thin wrappers over them.

* ``context``: what every step needs (database, clock, S3, provider client, dispatcher).
* ``dispatch``: the steps, and how an item's state names its next one.
* ``leases``: claiming an item for one step, so duplicates and redeliveries do nothing harmful.
* ``retry``: the declarative retry policy (what to do with each kind of failure).
* ``steps``: archive, request deletion, confirm purge.
* ``sweeper``: re-enqueues items whose step is due or whose lease expired.
* ``events``: recording accepted webhooks and the items they announce.
"""
