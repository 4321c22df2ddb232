"""The operator app in a real browser as an editor: the same Voila servers as ``test_voila_app.py`` (local and
served), started for ``ops-editor`` in a module of their own."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ..notebooks.conftest import ADMIN, SQLITE_ONLY, Seeded
from .test_voila_app import ARTIFACTS, PAGE_TIMEOUT_MS, chromium, page, seeded, voila

__all__ = ["chromium", "page", "seeded", "voila"]  # the fixtures, shared with test_voila_app.py

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_operator() -> str:
    return "ops-editor"


@SQLITE_ONLY
def test_an_editor_sees_a_waiting_jobs_payload_read_only_and_why(page: Any, seeded: Seeded) -> None:
    """An editor opens a queued job's detail: the payload editor and its Save button are disabled, with the
    reason as their tooltip; the job's own actions (Run now, Cancel) stay theirs."""
    from playwright.sync_api import expect

    reason = "Only administrators can change what a job runs; you are signed in as an editor."
    queue = page.locator(".sgen-queue")
    expect(queue).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    queue.locator(f".sgen-job-{seeded.queued} input[type=checkbox]").check()
    queue.locator("button.sgen-open-detail").click()
    detail = queue.locator(".sgen-detail")
    expect(detail).to_contain_text(str(seeded.queued))
    editor = detail.locator(".sgen-detail-payload-editor textarea")
    expect(editor).to_be_disabled()
    expect(editor).to_have_value(re.compile(r'"later": true'))
    expect(editor).to_have_attribute("title", reason)
    save = detail.locator("button.sgen-detail-save-payload")
    expect(save).to_be_disabled()
    expect(save).to_have_attribute("title", reason)
    expect(detail.locator("button.sgen-detail-trigger")).to_be_enabled()
    page.screenshot(path=str(ARTIFACTS / "editor-payload-read-only.png"), full_page=True)
    assert seeded.hub.as_operator(ADMIN).get_job(seeded.queued).payload == {"later": True}
