"""The signed install report: the technician's form on the commissioning page runs the doctor
checks, signs checks + sensors + config hash + note and queues an install_report event that a
real mosquitto delivers; a platform with the gateway's key verifies it."""

from __future__ import annotations

import asyncio
import stat

import aiohttp
import pytest

from conftest import async_wait_for
from edgeagent.installreport import KEY_FILE, report_key, verify
from test_web import config_for, fetch, serving

pytestmark = pytest.mark.broker
ROOT = "edgeagent/v1/test-gw"
TOKEN = "s3cret-token"


async def post(server, path: str, data: dict[str, str], **kwargs) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{server.port}{path}", data=data, **kwargs) as response:
        return response.status, await response.text()


def test_the_form_queues_a_signed_report_that_reaches_the_broker(broker, recorder_factory,
                                                                  tmp_path):
    recorder = recorder_factory(broker.port, ROOT)
    config = config_for(broker, tmp_path)

    async def scenario():
        async with serving(config, token=TOKEN) as (agent, server):
            status, _, page = await fetch(server, f"/?token={TOKEN}")
            assert status == 200
            assert f'action="install-report?token={TOKEN}"' in page  # the form keeps the token
            assert (await post(server, "/install-report", {"note": "x"}))[0] == 401
            status, text = await post(server, f"/install-report?token={TOKEN}",
                                      {"note": "mounted at 4 m, PM inlet facing north"})
            assert status == 200 and "Install report queued" in text
            foreign = await post(server, f"/install-report?token={TOKEN}", {"note": "x"},
                                 headers={"Origin": "http://evil.example"})
            assert foreign[0] == 403  # a form posted from another site
            too_long = await post(server, f"/install-report?token={TOKEN}", {"note": "x" * 501})
            assert too_long[0] == 400
            await async_wait_for(lambda: any(e["type"] == "install_report"
                                             for e in recorder.of("events")), 10,
                                 "the install report event")
            return agent

    agent = asyncio.run(scenario())
    (event,) = [e for e in recorder.of("events") if e["type"] == "install_report"]
    details = event["details"]
    assert details["note"] == "mounted at 4 m, PM inlet facing north"
    assert details["config_hash"] == agent.config.fingerprint()
    assert details["sensors"] == "air=ok, crowd=ok"
    assert details["checks_ok"] >= 1 and "broker" not in details["problems"]
    key_file = tmp_path / "state" / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = report_key(tmp_path / "state")
    assert verify(details, key)  # what the platform does with its copy of the key
    assert not verify({**details, "note": "changed on the way"}, key)
    assert not verify(details, b"another gateway's key".ljust(32))
    assert recorder.invalid == []
