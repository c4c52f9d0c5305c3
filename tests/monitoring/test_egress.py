"""Ping URLs cannot reach into the platform: loopback, link-local, private and cluster
addresses are refused unless declared as a branch's equipment network; a ping follows no
redirect and reads only a few KiB of the answer. Real HTTP servers on loopback."""

from __future__ import annotations

from collections import defaultdict
from ipaddress import ip_network

from aiohttp import web

from monitoring.egress import EgressPolicy
from monitoring.pinger import Pinger
from tests.monitoring.conftest import BRANCH, staff
from tests.support.apps import free_port
from tests.support.waiting import eventually


def device(device_id: str, ping_url: str, branch_id: str = BRANCH) -> dict:
    return {"device_id": device_id, "branch_id": branch_id, "kind": "treadmill", "name": "T", "ping_url": ping_url}


async def test_registration_refuses_internal_addresses_unless_the_branch_declares_them(open_monitor):
    declared = {"*": ["127.1.0.0/16"], "lab": ["127.0.0.0/8", "10.96.0.0/12"]}
    async with open_monitor(monitoring_equipment_networks=declared) as monitor:
        client = monitor.client
        for n, url in enumerate(
            (
                "http://127.0.0.1:8007/metrics",  # a platform port on loopback
                "http://localhost:5432/",  # a name that resolves to loopback
                "http://169.254.169.254/latest/meta-data/",  # cloud metadata
                "http://[fe80::1]/",
                "http://192.168.0.10/echo",
                "http://10.96.0.1/",  # the cluster's Service range
                "http://[::1]:7007/",
            )
        ):
            refused = await client.post("/v1/equipment", json=device(f"bad-{n}", url), headers=staff())
            assert refused.status_code == 422, url
            assert "ping_url refused" in refused.text
            bulk = await client.put("/v1/equipment", json=[device(f"bulk-{n}", url)], headers=staff())
            assert bulk.status_code == 422, url
        ok = await client.post("/v1/equipment", json=device("ok-1", "http://127.1.0.9:80/echo"), headers=staff())
        assert ok.status_code == 201  # declared for every branch
        public = await client.post("/v1/equipment", json=device("ok-2", "https://93.184.216.34/echo"), headers=staff())
        assert public.status_code == 201
        lab = device("lab-1", "http://127.0.0.1:9/echo", branch_id="lab")
        assert (await client.post("/v1/equipment", json=lab, headers=staff())).status_code == 201
        update = await client.put(
            "/v1/equipment/ok-1", json=device("ok-1", "http://10.96.0.10/"), headers=staff()
        )  # not declared for this branch
        assert update.status_code == 422


async def test_a_ping_follows_no_redirect_reads_little_and_rechecks_names():
    hits: dict[str, int] = defaultdict(int)

    async def redirect(_request: web.Request) -> web.Response:
        hits["redirect"] += 1
        raise web.HTTPFound("http://127.0.0.1/internal")

    async def internal(_request: web.Request) -> web.Response:
        hits["internal"] += 1
        return web.Response(text="secret")

    async def endless(request: web.Request) -> web.StreamResponse:
        hits["endless"] += 1
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65536
        for _ in range(16384):  # 1 GiB if anybody read it all
            await response.write(chunk)
        return response

    async def echo(_request: web.Request) -> web.Response:
        hits["echo"] += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/internal", internal)
    app.router.add_get("/endless", endless)
    app.router.add_get("/echo", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    results: dict[str, tuple[bool, str]] = {}

    async def record(device_id: str, ok: bool, detail: str) -> None:
        results.setdefault(device_id, (ok, detail))

    policy = EgressPolicy(networks={"lab": [ip_network("127.0.0.1/32")]}, service_cidrs=[])
    pinger = Pinger(interval_s=1, timeout_s=2, concurrency=4, on_result=record, egress=policy)
    await pinger.start()
    try:
        pinger.set_target("redirecting", f"http://127.0.0.1:{port}/redirect", "lab")
        pinger.set_target("chatty", f"http://127.0.0.1:{port}/endless", "lab")
        pinger.set_target("named", f"http://localhost:{port}/echo", "gangnam")  # resolved and checked per ping
        pinger.set_target("elsewhere", f"http://127.0.0.1:{port}/echo", "gangnam")  # not declared there
        await eventually(lambda: len(results) == 4, timeout=8)
    finally:
        await pinger.stop()
        await runner.cleanup()
    assert results["redirecting"] == (False, "status 302")
    assert hits["internal"] == 0
    assert results["chatty"] == (True, "")  # answered at once: the body is not read to the end
    assert results["elsewhere"][0] is False
    assert results["elsewhere"][1].startswith("refused")
    assert results["named"][0] is False
    assert results["named"][1].startswith("refused: localhost is")
    assert hits["echo"] == 0
