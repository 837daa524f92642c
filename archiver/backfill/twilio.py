"""Twilio's backfill: a Service's transcripts by creation date, following ``meta.next_page_url`` (the
checkpoint); the completed ones are archived."""

from __future__ import annotations

from archiver.backfill.progress import commit_progress, list_request, load_run
from archiver.core.ids import InvalidId, validate
from archiver.pipeline.context import PipelineContext
from archiver.pipeline.items import AnnouncedItem


def twilio_step(ctx: PipelineContext, run_id: int, owner: str) -> bool:
    service, params, checkpoint = load_run(ctx, run_id)
    query = {"ServiceSid": service, "PageSize": "1000", "AfterDateCreated": params["since"]}
    if params.get("until"):
        query["BeforeDateCreated"] = params["until"]
    client = ctx.twilio_for(params["account"]) if params.get("account") else ctx.twilio
    with list_request(ctx, run_id, client) as answered:
        items, next_url = client.transcript_page(checkpoint.get("next_url"), query)
    found = []
    for t in items:
        try:
            sid = validate("twilio_transcript", t.get("sid"))
            account = validate("twilio_account", t.get("account_sid"))
        except InvalidId:
            continue
        if t.get("status") == "completed":
            found.append(AnnouncedItem.twilio_transcript(account, sid))
    checkpoint = {"next_url": next_url, "started": True}
    return commit_progress(
        ctx, run_id, owner, found, checkpoint, windows_done=1, requests=answered.count, done=next_url is None
    )
