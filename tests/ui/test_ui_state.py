"""The server does not keep Gradio's per-session state for ever (assistant/app/ui/state.py): an API call's session is
dropped once it ran, a browser tab's is kept while the tab is open and dropped after it closed; against the real app
with real HTTP calls and a real Chromium tab."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.ui.conftest import PASSWORDS, log_in


@pytest.fixture
def sweeper(app_served):
    """The running app's sweeper, with every wait set to 0 for the test (restored after)."""
    sweeper = app_served[1].comply_state_sweeper
    saved = sweeper.keep_closed_s, sweeper.keep_unattached_s
    sweeper.keep_closed_s = sweeper.keep_unattached_s = 0.0
    yield sweeper
    sweeper.keep_closed_s, sweeper.keep_unattached_s = saved


def library_call(client: httpx.Client) -> str:
    """List the library through Gradio's HTTP API (a session of its own), read to the end; the call's event id."""
    started = client.post("/gradio_api/call/library", json={"data": [False]})
    assert started.status_code == 200, started.text
    event_id = started.json()["event_id"]
    stream = client.get(f"/gradio_api/call/library/{event_id}")
    assert re.findall(r"event: (\w+)", stream.text)[-1] == "complete", stream.text[:300]
    return event_id


def test_an_api_calls_session_state_is_dropped_once_it_ran(app_served, sweeper):
    url, demo = app_served
    holder, queue = demo.state_holder, demo._queue
    with httpx.Client(base_url=url, timeout=120) as client:
        assert client.post("/login", data={"username": "viewer", "password": PASSWORDS["viewer"]}).status_code == 200
        sessions = [library_call(client) for _ in range(6)]
    assert all(s in holder.session_data for s in sessions)  # what Gradio keeps, until 10,000 sessions exist
    assert sweeper.sweep_on_loop() >= len(sessions)
    assert not [s for s in sessions if s in holder.session_data]
    assert not [s for s in sessions if s in queue.pending_messages_per_session or s in queue.pending_event_ids_session]


def test_a_browser_tabs_state_is_kept_while_it_is_open_and_dropped_after(app_served, browser, sweeper):
    url, demo = app_served
    holder = demo.state_holder
    before = set(holder.session_data)
    context, page = log_in(browser, url, "viewer")
    try:
        deadline = time.monotonic() + 30
        while not (tabs := {s for s in set(holder.session_data) - before if sweeper.heartbeats.attached(s)}):
            assert time.monotonic() < deadline, "the tab's session never appeared with a heartbeat"
            time.sleep(0.2)
        sweeper.sweep_on_loop()
        assert tabs <= set(holder.session_data)  # open: kept, although it is idle and every wait is 0
        page.get_by_text("Logged in as viewer").wait_for()
    finally:
        context.close()
    deadline = time.monotonic() + 30
    while any(sweeper.heartbeats.attached(s) for s in tabs):  # the server sees the heartbeat end
        assert time.monotonic() < deadline, "the closed tab's heartbeat never ended"
        time.sleep(0.2)
    sweeper.sweep_on_loop()
    assert not tabs & set(holder.session_data)


def test_a_closed_tab_is_kept_for_the_configured_time(app_served, browser, sweeper):
    url, demo = app_served
    holder = demo.state_holder
    sweeper.keep_closed_s = 3600.0
    before = set(holder.session_data)
    context, page = log_in(browser, url, "viewer")
    deadline = time.monotonic() + 30
    while not (tabs := {s for s in set(holder.session_data) - before if sweeper.heartbeats.attached(s)}):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    context.close()
    while any(sweeper.heartbeats.attached(s) for s in tabs):
        assert time.monotonic() < deadline + 30
        time.sleep(0.2)
    sweeper.sweep_on_loop()
    assert tabs <= set(holder.session_data)  # closed a moment ago: kept for an hour, as configured


def test_a_failed_api_calls_session_state_is_dropped_too(app_served, sweeper):
    url, demo = app_served
    holder = demo.state_holder
    with httpx.Client(base_url=url, timeout=120) as client:
        assert client.post("/login", data={"username": "viewer", "password": PASSWORDS["viewer"]}).status_code == 200
        started = client.post("/gradio_api/call/library", json={"data": []})  # one input short
        assert started.status_code == 200, started.text
        event_id = started.json()["event_id"]
        stream = client.get(f"/gradio_api/call/library/{event_id}")
        assert re.findall(r"event: (\w+)", stream.text)[-1] == "error", stream.text[:300]
    sweeper.sweep_on_loop()
    assert event_id not in holder.session_data
