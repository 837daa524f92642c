"""Asking Twilio for a transcript (a recording it holds, or a media URL), and tracking it: an event
recorded as a webhook's would be, whose item is due after the poll interval, so that the sweeper
looks at the transcript even if its webhook never comes."""

from __future__ import annotations

import logging

from archiver.core.ids import validate
from archiver.core.logging import mask_url_queries
from archiver.db.models import Provider
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.events import AcceptedEvent, record_event
from archiver.pipeline.items import Action, AnnouncedItem

__all__ = ["request_transcript"]

log = logging.getLogger(__name__)


def request_transcript(
    ctx: PipelineContext,
    service_sid: str,
    *,
    media_url: str | None = None,
    source_sid: str | None = None,
    customer_key: str | None = None,
    account_sid: str | None = None,
) -> tuple[str, int | None]:
    """Ask Twilio for a transcript and track it: the item is due after the poll interval, so that
    the sweeper polls its status if the webhook never comes (a due time, not a countdown)."""
    if (media_url is None) == (source_sid is None):
        raise ValueError("give exactly one of media_url and source_sid")
    properties = (
        {"media_url": media_url} if media_url else {"source_sid": validate("twilio_recording", source_sid)}
    )
    if customer_key is not None and len(customer_key) > 64:
        raise ValueError("customer_key is longer than 64 characters")
    client = ctx.twilio_for(validate("twilio_account", account_sid)) if account_sid else ctx.twilio
    document = client.create_transcript(service_sid, {"media_properties": properties}, customer_key)
    sid = validate("twilio_transcript", document.data.get("sid"))
    account = validate("twilio_account", document.data.get("account_sid") or client.account_sid)
    event = AcceptedEvent(
        provider=Provider.TWILIO,
        event_type="transcript_requested",
        dedupe_key=f"twilio:requested:{sid}",
        account_id=account,
        # Twilio echoes the media URL: a presigned URL's query is a credential, not kept.
        payload=mask_url_queries(document.body.decode("utf-8", "replace")),
        item=AnnouncedItem.twilio_transcript(account, sid, Action.ARCHIVE_LATER),
    )
    _recorded, item_id = record_event(ctx, event)
    log.info("requested Twilio transcript %s (item %s)", sid, item_id)
    return sid, item_id
