"""The shared request budget: a token bucket in the real Redis, spent by several processes (as
workers on several hosts would) against the simulator's own per-account limit over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import redis

from archiver.core.rate_budget import RateBudget
from archiver.providers.bandwidth import BandwidthClient
from archiver.providers.errors import RateLimited
from tests.support.stack import SIM_CLIENT_ID, SIM_CLIENT_SECRET, test_redis_url

BUDGET_REDIS = test_redis_url("budget")

#: One "worker host": lists recordings as fast as it may for ``seconds``, spending the shared budget
#: (when ``rate`` > 0); prints how many requests it sent and how many answers were 429.
HOST = """
import json, os, sys, time
from archiver.providers.bandwidth import BandwidthClient
from archiver.providers.errors import RateLimited
from archiver.core.rate_budget import RateBudget
url, redis_url, key, rate, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
client = BandwidthClient(base_url=url + "/api/v2", client_id=sys.argv[6],
                         client_secret=os.environ["SIM_CLIENT_SECRET"], token_url=url + "/api/v1/oauth2/token")
client.tokens.refresh()  # the token before the clock starts: the budget is the API's
if rate > 0:
    client.budget = RateBudget.from_url(redis_url, "bandwidth", key, rate, burst=1, max_wait=5)
sent = limited = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    sent += 1
    try:
        client.list_recordings("9900000", "2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z")
    except RateLimited:
        limited += 1
print(json.dumps({"sent": sent, "limited": limited}))
"""


def run_hosts(sim, rate, hosts=3, seconds=4.0):
    key = uuid.uuid4().hex
    argv = [sys.executable, "-c", HOST, sim.url, BUDGET_REDIS, key, str(rate), str(seconds), SIM_CLIENT_ID]
    env = {**os.environ, "SIM_CLIENT_SECRET": SIM_CLIENT_SECRET}
    processes = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env) for _ in range(hosts)]
    results = [json.loads(p.communicate(timeout=60)[0]) for p in processes]
    return sum(r["sent"] for r in results), sum(r["limited"] for r in results)


def limit_simulator(sim, rate):
    # The simulator tolerates a little jitter (burst 3); our budget paces at burst 1.
    limits = {f"bandwidth:{sim.account}": {"rate": rate, "burst": 3}}
    sim.admin.client.put("/admin/rate-limits", json={"limits": limits}).raise_for_status()


def test_three_processes_sharing_the_budget_draw_no_429_and_use_the_rate(sim):
    rate, seconds = 10.0, 4.0
    limit_simulator(sim, rate)
    _sent, limited = run_hosts(sim, rate, seconds=seconds)
    audit = sim.admin.audit(method="GET")
    assert limited == 0 and {e["status"] for e in audit} == {200}
    # The budget is used, not exceeded, over the span the requests actually took (the processes
    # start at slightly different times).
    span = audit[-1]["monotonic"] - audit[0]["monotonic"]
    assert span >= seconds - 0.5
    assert 0.85 * rate * span <= len(audit) - 1 <= rate * span * 1.02


def test_without_the_shared_budget_the_same_load_draws_429s(sim):
    limit_simulator(sim, 10.0)
    _sent, limited = run_hosts(sim, 0.0, seconds=2.0)
    assert limited > 20  # what the budget prevents


def test_a_slot_further_than_max_wait_is_not_waited_for_but_reported():
    client = redis.Redis.from_url(BUDGET_REDIS)
    budget = RateBudget(
        client, f"archiver:rate-budget:test:{uuid.uuid4().hex}", rate=1.0, burst=1, max_wait=0.2
    )
    assert budget.acquire().granted
    started = time.monotonic()
    later = budget.acquire()
    assert not later.granted and 0.8 <= later.wait <= 1.0
    assert time.monotonic() - started < 0.1  # not waited for


def test_a_client_whose_budget_is_spent_raises_rate_limited_without_a_request(sim):
    client = BandwidthClient(
        base_url=sim.url + "/api/v2",
        client_id=SIM_CLIENT_ID,
        client_secret=SIM_CLIENT_SECRET,
        token_url=sim.token_url,
    )
    redis_client = redis.Redis.from_url(BUDGET_REDIS)
    client.budget = RateBudget(redis_client, f"archiver:rate-budget:test:{uuid.uuid4().hex}", 0.5, 1, 0.0)
    client.list_recordings("9900000", "2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z")
    with pytest.raises(RateLimited) as caught:
        client.list_recordings("9900000", "2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z")
    assert 1.5 <= caught.value.retry_after <= 2.0 and "shared rate budget" in str(caught.value)
    assert len(sim.admin.audit(method="GET")) == 1


def test_redis_unreachable_grants_rather_than_stalling_every_worker():
    client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    budget = RateBudget(client, "archiver:rate-budget:test:down", rate=1.0)
    assert budget.reserve().granted
