"""Twilio's list paging: ``meta.url`` is the page itself (with its ``PageToken``),
``next_page_url`` carries a ``PA…`` token (the items after this page), ``previous_page_url`` a
``PB…`` token (the page before this one), ``first_page_url`` none."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from archiver.simulator.twilio_common import BadParameter

__all__ = ["page_meta", "page_size", "page_token", "paged", "read_token"]


def page_token(key: Sequence[Any], direction: str = "PA") -> str:
    """``PA…``: the page after ``key``; ``PB…``: the page before it."""
    return direction + base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def read_token(token: str) -> tuple[str, list[Any]] | None:
    if token[:2] not in ("PA", "PB"):
        return None
    raw = token[2:]
    try:
        value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        return None
    return (token[:2], value) if isinstance(value, list) else None


def page_size(request: Request, maximum: int) -> int:
    """``PageSize``, 50 by default, within [1, maximum]."""
    raw = request.query_params.get("PageSize", "50")
    if not raw.isdigit() or not (1 <= int(raw) <= maximum):
        raise BadParameter(f"PageSize must be between 1 and {maximum}")
    return int(raw)


def page_meta(
    request: Request,
    base_url: str,
    key: str,
    size: int,
    page: int,
    next_key: Sequence[Any] | None,
    previous_key: Sequence[Any] | None,
) -> dict[str, Any]:
    """``next_key``: the last item's key if more follow; ``previous_key``: the first item's if
    some come before."""
    path = request.url.path
    params = {k: v for k, v in request.query_params.items() if k not in ("PageToken", "Page", "PageSize")}

    def page_url(number: int, token: str | None) -> str:
        query = {**params, "PageSize": size, "Page": number}
        return f"{base_url}{path}?" + urlencode({**query, "PageToken": token} if token else query)

    return {
        "first_page_url": page_url(0, None),
        "key": key,
        "next_page_url": page_url(page + 1, page_token(next_key)) if next_key is not None else None,
        "page": page,
        "page_size": size,
        "previous_page_url": (
            page_url(max(page - 1, 0), page_token(previous_key, "PB")) if previous_key is not None else None
        ),
        "url": page_url(page, request.query_params.get("PageToken")),
    }


def paged(
    request: Request,
    base_url: str,
    key: str,
    items: Sequence[Any],
    size: int,
    sort_key: Callable[[Any], list[Any]],
    render: Callable[[Any], dict[str, Any]],
    *,
    ordered_ints: bool = False,
) -> Response:
    """One page of ``items`` (sorted by ``sort_key``). ``ordered_ints``: the items are
    ``range(n)``, keyed ``[i]``: a token is found without a scan."""
    token = request.query_params.get("PageToken")
    start = 0
    if token:
        read = read_token(token)
        if read is None:
            raise BadParameter("PageToken is invalid")
        direction, mark = read

        def first_at_or_after(strictly: bool) -> int:
            if ordered_ints:
                if not (mark and isinstance(mark[0], int)):
                    raise BadParameter("PageToken is invalid")
                return max(0, min(len(items), mark[0] + int(strictly)))
            return next(
                (
                    i
                    for i, item in enumerate(items)
                    if (sort_key(item) > mark if strictly else sort_key(item) >= mark)
                ),
                len(items),
            )

        if direction == "PA":
            start = first_at_or_after(strictly=True)
        else:  # the page that ends just before the mark
            start = max(0, first_at_or_after(strictly=False) - size)
    chunk = items[start : start + size]
    more = start + size < len(items)
    page = int(request.query_params.get("Page", "0") or 0)
    meta = page_meta(
        request,
        base_url,
        key,
        size,
        page,
        sort_key(chunk[-1]) if more and chunk else None,
        sort_key(chunk[0]) if start > 0 and chunk else None,
    )
    return JSONResponse({key: [render(item) for item in chunk], "meta": meta})
