"""The intake's own Prometheus metrics (requests, accepted events, rejections by reason, latency),
counted in the intake process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["IntakeMetrics"]


class IntakeMetrics:
    """The intake's request metrics, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "archiver_intake_requests", "Webhook requests answered", ["provider", "status"], registry=registry
        )
        self.accepted = Counter(
            "archiver_intake_events_accepted",
            "Events stored (new, duplicate, or stored without an item)",
            ["provider", "event_type", "outcome"],
            registry=registry,
        )
        self.rejected = Counter(
            "archiver_intake_rejected",
            "Requests refused, by reason",
            ["provider", "reason"],
            registry=registry,
        )
        self.batch_events = Histogram(
            "archiver_intake_batch_events",
            "Events committed together in one intake transaction (group commit)",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=registry,
        )
        self.messages = Counter(
            "archiver_intake_messages",
            "Step messages of committed batches: sent directly, relayed through a worker, or failed "
            "(left to the sweeper)",
            ["path"],
            registry=registry,
        )
        self.latency = Histogram(
            "archiver_intake_request_seconds",
            "Time to answer a webhook (the event is durable before the answer)",
            ["provider"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
