"""The simulator behaves as the providers do today (docs/providers.md): Bandwidth takes only OAuth 2.0
bearer tokens, Twilio takes API keys and both auth tokens, its lists page both ways as Twilio's do,
every link a transcript advertises answers, and the capped recordings list answers in any order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

from tests.support.stack import SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_TWILIO_SID, SIM_TWILIO_TOKEN


def grant(sim, client_id=SIM_CLIENT_ID, secret=SIM_CLIENT_SECRET, **overrides):
    data = overrides.pop("data", {"grant_type": "client_credentials"})
    return httpx.post(sim.token_url, data=data, auth=(client_id, secret), **overrides)


def voice(sim, token=None, auth=None, path=None):
    url = f"{sim.url}/api/v2" + (path or f"/accounts/{sim.account}/recordings")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers=headers, auth=auth)


def oauth_admin(sim, **body):
    response = sim.admin.client.put("/admin/bandwidth/oauth", json=body)
    response.raise_for_status()
    return response.json()


# --- Bandwidth: OAuth 2.0 client credentials only ------------------------------------------------------


def test_the_token_endpoint_grants_client_credentials_and_the_api_takes_the_bearer(sim):
    response = grant(sim)
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and len(body["access_token"]) > 20
    assert voice(sim, body["access_token"]).status_code == 200
    entries = sim.admin.audit(path_contains="oauth2")
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [("POST", "/api/v1/oauth2/token", 200)]
    assert SIM_CLIENT_SECRET not in str(entries) and body["access_token"] not in str(sim.admin.audit())


@pytest.mark.parametrize(
    ("client_id", "secret", "data", "status", "error"),
    [
        (SIM_CLIENT_ID, "wrong", None, 401, "invalid_client"),
        ("someone", SIM_CLIENT_SECRET, None, 401, "invalid_client"),
        (SIM_CLIENT_ID, SIM_CLIENT_SECRET, {"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
    ids=["wrong-secret", "unknown-client", "other-grant"],
)
def test_the_token_endpoint_refuses_in_rfc6749s_words(sim, client_id, secret, data, status, error):
    response = grant(sim, client_id, secret, **({"data": data} if data else {}))
    assert response.status_code == status and response.json()["error"] == error


def test_basic_auth_is_refused_in_bandwidths_error_shape(sim):
    for auth in [("sim-user", "sim-password"), (SIM_CLIENT_ID, SIM_CLIENT_SECRET)]:
        response = voice(sim, auth=auth)
        assert response.status_code == 401
        assert response.json() == {
            "type": "authentication-error",
            "description": "The credentials provided were invalid",
            "id": None,
        }


def test_unknown_expired_and_revoked_tokens_are_refused(sim):
    assert voice(sim, "not-a-token").status_code == 401
    oauth_admin(sim, token_lifetime=5)
    short = grant(sim).json()
    assert short["expires_in"] == 5 and voice(sim, short["access_token"]).status_code == 200
    sim.admin.client.post("/admin/clock/advance", json={"seconds": 6}).raise_for_status()
    assert voice(sim, short["access_token"]).status_code == 401  # expired on the simulator's clock
    long = grant(sim).json()["access_token"]
    assert sim.admin.client.post("/admin/bandwidth/oauth/revoke").json()["revoked"] >= 1
    assert voice(sim, long).status_code == 401


def test_a_rotated_secret_refuses_the_old_one_and_two_secrets_may_overlap(sim):
    oauth_admin(sim, client_secrets=[SIM_CLIENT_SECRET, "second-secret"])
    assert grant(sim).status_code == 200 and grant(sim, secret="second-secret").status_code == 200
    described = oauth_admin(sim, client_secret="second-secret")
    assert described["secrets"] == 1 and "second-secret" not in str(described)
    assert grant(sim).status_code == 401
    assert grant(sim, secret="second-secret").status_code == 200


def test_a_token_outside_the_credentials_account_scope_is_refused_403(sim):
    oauth_admin(sim, accounts=["1234567"])
    token = grant(sim).json()["access_token"]
    forbidden = voice(sim, token)
    assert forbidden.status_code == 403 and forbidden.json()["type"] == "authorization-error"
    assert voice(sim, token, path="/accounts/1234567/recordings").status_code == 200


def test_fault_rules_apply_to_the_token_endpoint(sim):
    sim.admin.set_faults({"status": 503, "count": 1, "path_contains": "oauth2"})
    assert grant(sim).status_code == 503
    sim.admin.set_faults({"status": 429, "retry_after": 9, "count": 1, "path_contains": "oauth2"})
    limited = grant(sim)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "9"
    assert grant(sim).status_code == 200


def test_the_simulator_restores_the_credential_on_reset_but_keeps_issued_tokens(sim):
    token = grant(sim).json()["access_token"]
    oauth_admin(sim, client_secret="rotated", token_lifetime=7)
    sim.admin.reset()
    assert oauth_admin(sim)["token_lifetime"] == 3600
    assert grant(sim).status_code == 200 and voice(sim, token).status_code == 200


# --- Twilio: API keys, two auth tokens ---------------------------------------------------------------


def test_twilio_takes_an_api_key_and_both_auth_tokens_for_rest_and_nothing_else(sim):
    key_sid = "SK" + "c" * 32
    sim.admin.client.put(
        "/admin/twilio/credentials",
        json={"api_keys": {key_sid: "key-secret-1"}, "secondary_auth_token": "second-token"},
    ).raise_for_status()
    services = f"{sim.url}/v2/Services"
    assert httpx.get(services, auth=(key_sid, "key-secret-1")).status_code == 200
    assert httpx.get(services, auth=(SIM_TWILIO_SID, SIM_TWILIO_TOKEN)).status_code == 200
    assert httpx.get(services, auth=(SIM_TWILIO_SID, "second-token")).status_code == 200
    for auth in [(key_sid, "wrong"), (SIM_TWILIO_SID, "key-secret-1"), ("SK" + "d" * 32, "key-secret-1")]:
        refused = httpx.get(services, auth=auth)
        assert refused.status_code == 401 and refused.json()["code"] == 20003


def test_twilio_webhooks_are_signed_with_the_primary_token_or_as_asked(sim):
    from tests.support.oracles import twilio_signature

    sim.admin.client.put("/admin/twilio/credentials", json={"secondary_auth_token": "second-token"})
    created = sim.admin.client.post(
        "/admin/twilio/transcripts", json={"count": 1, "queued_seconds": 0, "processing_seconds": 0}
    ).json()
    hook = f"{sim.receiver.url}/signed-hook"
    for options, token in [({}, SIM_TWILIO_TOKEN), ({"sign_with": "secondary"}, "second-token"),
                           ({"signing_token": "third-token"}, "third-token")]:  # fmt: skip
        sim.receiver.clear()
        sim.admin.send_webhooks(event="twilio", intake_url=hook, format="form", **options)
        [received] = [r for r in sim.receiver.requests if r.path == "/signed-hook"]
        params = parse_qs(received.body.decode(), keep_blank_values=True)
        assert params["transcript_sid"] == [created["created"][0]["sid"]]
        assert received.headers["x-twilio-signature"] == twilio_signature(token, hook, params)


# --- Twilio lists and links --------------------------------------------------------------------------


def test_twilio_pages_carry_their_own_token_forwards_and_backwards(sim):
    created = sim.admin.client.post(
        "/admin/twilio/transcripts",
        json={"count": 1, "sentences": 10, "queued_seconds": 0, "processing_seconds": 0},
    ).json()
    sid = created["created"][0]["sid"]
    url, pages = f"/v2/Transcripts/{sid}/Sentences?PageSize=4&Redacted=false", []
    while url:
        body = sim.twilio.get(url).json()
        pages.append(body)
        url = body["meta"]["next_page_url"]
    indexes = [[s["sentence_index"] for s in page["sentences"]] for page in pages]
    assert indexes == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert pages[0]["meta"]["previous_page_url"] is None
    for number, page in enumerate(pages):
        again = sim.twilio.get(page["meta"]["url"]).json()  # meta.url is this very page
        assert [s["sentence_index"] for s in again["sentences"]] == indexes[number]
        assert again["meta"]["page"] == number
    backwards, url = [], pages[-1]["meta"]["previous_page_url"]
    while url:  # a client that pages backwards from the last page
        assert "PageToken=PB" in url
        body = sim.twilio.get(url).json()
        backwards.append([s["sentence_index"] for s in body["sentences"]])
        url = body["meta"]["previous_page_url"]
    assert backwards == [[4, 5, 6, 7], [0, 1, 2, 3]]
    first = sim.twilio.get(pages[-1]["meta"]["first_page_url"]).json()
    assert [s["sentence_index"] for s in first["sentences"]] == [0, 1, 2, 3]


def test_transcript_lists_page_backwards_too(sim):
    a = sim.admin.client.post(
        "/admin/twilio/transcripts", json={"count": 5, "queued_seconds": 0, "processing_seconds": 0}
    ).json()
    url, pages = f"/v2/Transcripts?ServiceSid={a['service_sid']}&PageSize=2", []
    while url:
        body = sim.twilio.get(url).json()
        pages.append([t["sid"] for t in body["transcripts"]])
        last = body
        url = body["meta"]["next_page_url"]
    previous = sim.twilio.get(last["meta"]["previous_page_url"]).json()
    assert [t["sid"] for t in previous["transcripts"]] == pages[-2]
    assert sim.twilio.get(last["meta"]["url"]).json()["transcripts"] == last["transcripts"]


def test_every_link_a_transcript_advertises_answers(sim):
    created = sim.admin.client.post(
        "/admin/twilio/transcripts",
        json={"count": 1, "operator_results": 2, "queued_seconds": 0, "processing_seconds": 0},
    ).json()
    transcript = sim.twilio.get(f"/v2/Transcripts/{created['created'][0]['sid']}").json()
    assert set(transcript["links"]) == {
        "sentences", "encrypted_sentences", "media", "operator_results", "encrypted_operator_results",
    }  # fmt: skip
    for name, link in transcript["links"].items():
        response = sim.twilio.get(link)
        assert response.status_code == 200, (name, response.text)
        assert response.headers["content-type"].startswith("application/json")
    encrypted = sim.twilio.get(transcript["links"]["encrypted_sentences"]).json()
    assert encrypted["transcript_sid"] == transcript["sid"]
    assert httpx.get(encrypted["location"]).status_code == 200  # the blob it points at answers too
    results = sim.twilio.get(transcript["links"]["encrypted_operator_results"]).json()
    assert len(results["locations"]) == 2 and all(
        httpx.get(u).status_code == 200 for u in results["locations"]
    )


@pytest.mark.parametrize("path", ["/v2/Nope", "/v2/Transcripts/GT123/Whatever/Else", "/v2/"])
def test_an_unknown_v2_path_answers_twilios_json_error(sim, path):
    response = sim.twilio.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == 20404 and response.json()["status"] == 404


# --- Bandwidth's capped list, in any order --------------------------------------------------------


@pytest.mark.parametrize("order", ["oldest-first", "newest-first", "shuffled"])
def test_the_capped_recordings_list_answers_in_the_order_set(sim, order):
    start = datetime(2026, 11, 1, tzinfo=UTC)
    sim.admin.client.post(
        "/admin/recordings", json={"count": 1500, "start_time": start.isoformat(), "spread_seconds": 1}
    ).raise_for_status()
    assert sim.admin.client.put("/admin/bandwidth/list-order", json={"order": order}).json() == {
        "order": order
    }
    window = {"minStartTime": start.isoformat(), "maxStartTime": (start + timedelta(hours=1)).isoformat()}
    page = sim.bandwidth.get(f"/accounts/{sim.account}/recordings", params=window).json()
    starts = [r["startTime"] for r in page]
    assert len(page) == 1000
    if order == "oldest-first":
        assert starts == sorted(starts) and min(starts).startswith("2026-11-01T00:00:00")
    elif order == "newest-first":
        assert starts == sorted(starts, reverse=True) and max(starts).startswith("2026-11-01T00:24:59")
    else:
        assert starts not in (sorted(starts), sorted(starts, reverse=True))
    sim.admin.reset()
    assert sim.admin.client.get("/admin/bandwidth/list-order").json() == {"order": "oldest-first"}
