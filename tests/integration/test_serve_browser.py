"""The live dashboard in a real headless Chromium: a user's list appears and changes, without a reload, after
an event is posted (a real worker turns the event into a new list). With ``DASHBOARD_SCREENSHOT=PATH`` the
test also writes its screenshot there (the README's docs/serve-dashboard.png comes from this test)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from streamrec.models.base.artifact import random_artifact
from streamrec.stream.settings import Settings
from tests.integration.browser import Browser, chromium_path
from tests.integration.serving import call, running, until
from tests.integration.workers import ThreadWorker

ROWS = "[...document.querySelectorAll('#list tbody tr')].map(r => r.dataset.item)"


def post(url: str, **event: object) -> dict:  # type: ignore[type-arg]
    status, answer = call(url + "/v1/events", json.dumps(event))
    assert status == 200, answer
    return answer  # type: ignore[no-any-return]


@pytest.mark.skipif(chromium_path() is None, reason="no chromium on this machine (apt-get install -y chromium)")
def test_dashboard_shows_a_list_that_changes_after_an_event(settings: Settings, tmp_path: Path) -> None:
    random_artifact(tmp_path / "m", n_items=2000, dim=16, seed=3, clusters=10, version="m1")
    s = settings.replace(model_path=str(tmp_path / "m"))
    worker = ThreadWorker(s, model_sync=False)
    browser = None
    try:
        worker.wait_ready()
        with running(s) as (_service, url):
            assert until(lambda: call(url + "/readyz")[0] == 200)
            for k, item in enumerate(["i13", "i23", "i33"]):
                post(url, event_id=f"a{k}", user_id="alice", item_id=item, event_type="CLICK")
            waited = call(url + "/v1/users/alice/recommendations?after_event=a2&wait_ms=10000")[1]
            assert waited["after_event"]["arrived"], waited
            post(url, event_id="b0", user_id="bob", item_id="i7", event_type="VIEW")   # another user: trending

            browser = Browser(tmp_path / "profile")
            browser.open(url + "/dashboard/?user=alice")
            first = browser.wait_for(f"document.getElementById('list-kind').textContent === 'personal' && {ROWS}")
            assert first and len(first) == s.top_n, first
            trigger = browser.eval("document.getElementById('list').dataset.trigger")
            assert trigger.startswith("a2@")
            assert browser.wait_for("document.querySelectorAll('#events tbody tr').length === 3")
            assert browser.eval("document.getElementById('model-version').textContent") == "m1"
            sources = browser.eval("[...document.querySelectorAll('#list tbody td.src')].map(td => td.textContent)")
            assert sources and "ann" in sources

            # purchase the top item: the worker emits a new list without it, and the open page shows it
            bought = first[0]
            post(url, event_id="a3", user_id="alice", item_id=bought, event_type="PURCHASE")
            changed = browser.wait_for(
                "document.getElementById('list').dataset.trigger.startsWith('a3@') && " + ROWS)
            assert changed and bought not in changed, (bought, changed)
            assert browser.eval("document.querySelector('#events tbody tr td:nth-child(2)').textContent") == "PURCHASE"
            assert browser.wait_for("document.getElementById('status').textContent === 'ready'")
            assert browser.wait_for("Number(document.getElementById('users').textContent) >= 2")
            shot = tmp_path / "dashboard.png"
            browser.screenshot(shot)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
            if os.environ.get("DASHBOARD_SCREENSHOT"):
                shutil.copyfile(shot, os.environ["DASHBOARD_SCREENSHOT"])
    finally:
        if browser is not None:
            browser.close()
        worker.stop()
