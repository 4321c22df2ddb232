"""The operator app in a real browser: ``voila notebooks/app.ipynb`` on a seeded stack, driven with
Debian's Chromium through Playwright. An administrator re-runs a failed job from the queue and replays a
dead letter from the triage tab; the page and the ledger both show the change.

Screenshots go to ``test-artifacts/browser/`` (kept on failure too, with the Voila log)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sgen_ops.ops.demo import kernel_arguments

from ..api.conftest import free_port, start_server
from ..conftest import ROOT, Stack
from ..helpers import wait_for
from ..notebooks.conftest import ADMIN, SQLITE_ONLY, Seeded, seed

# One xdist worker runs them all (tests/conftest.py's SAME_WORKER), each kind of app's tests on one server.
pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
# Voila starts a kernel and runs the app notebook on the first request: give it time on a slow machine.
PAGE_TIMEOUT_MS = 120_000
ACTION_TIMEOUT_MS = 60_000


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is not installed (Debian package chromium; never a downloaded browser)"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI must run the browser tests: {reason}")
    pytest.skip(reason)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"voila exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"voila did not listen on port {port} within {timeout}s:\n{log.read_text()[-4000:]}")


@dataclass
class App:
    """A Voila server of the operator app, and the seeded stack it serves."""

    url: str
    seeded: Seeded


@pytest.fixture(scope="module")
def app_operator() -> str:
    """The operator the app runs as. A module of tests for another operator overrides it
    (``test_voila_editor.py``): a module-wide server serves one operator, whatever order pytest runs tests in."""
    return ADMIN


@pytest.fixture(scope="module", params=["local", "served"])
def voila(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path, redis_url: str,
    app_operator: str,
) -> Iterator[App]:
    """``voila notebooks/app.ipynb`` on a seeded stack as ``app_operator``, one server (and one stack) for the
    module's tests of each kind. Local: the kernel holds the ledger's settings. Served: it holds only the URL of
    ``sgen-ops serve`` and a token (the ledger and Redis settings it gets point nowhere), so every operation
    goes over HTTP. Each page a test opens starts a kernel of its own; the tests share the ledger, and none
    relies on another's changes to it."""
    require_chromium()
    home = tmp_path_factory.mktemp(f"voila-{request.param}")
    shutil.copyfile(migrated_sqlite, home / "ledger.db")
    stack = Stack(home, f"sqlite:///{home / 'ledger.db'}", redis_url)
    server = proc = None
    log = home / "voila.log"
    try:
        seeded = seed(stack)
        env = seeded.env(app_operator)
        if request.param == "served":
            server, url = start_server(seeded.stack)
            env.update(SGEN_OPS_API_URL=url, SGEN_OPS_API_TOKEN=seeded.hub.create_token(app_operator),
                       SGEN_OPS_DATABASE_URL="postgresql://nobody@127.0.0.1:1/nothing",
                       SGEN_OPS_REDIS_URL="redis://127.0.0.1:1/0")
            env.pop("SGEN_OPS_OPERATOR")
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "voila", "notebooks/app.ipynb", "--no-browser", f"--port={port}",
                 "--Voila.ip=127.0.0.1", "--VoilaConfiguration.show_tracebacks=True", *kernel_arguments()],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        wait_for_port(port, proc, log)
        yield App(f"http://127.0.0.1:{port}/", seeded)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if server is not None:
            server.stop()
        stack.close()
        if log.exists():
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, ARTIFACTS / f"voila-{request.param}-{app_operator}.log")


@pytest.fixture
def seeded(voila: App, database_url: str) -> Seeded:
    """The stack the app serves. (``database_url`` only keeps ``SQLITE_ONLY`` valid: the app's stack is the
    module's own SQLite ledger.)"""
    return voila.seeded


@pytest.fixture(scope="module")
def chromium(voila: App) -> Iterator[Any]:
    """Debian's Chromium through Playwright, one for the module's tests of each kind of app."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(voila: App, chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context on the app: a page of its own, so a kernel of its own."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    context = chromium.new_context(viewport={"width": 1400, "height": 2000})
    page = context.new_page()
    page.set_default_timeout(ACTION_TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(voila.url, timeout=PAGE_TIMEOUT_MS, wait_until="domcontentloaded")
        try:
            yield page
        except BaseException:
            page.screenshot(path=f"{shot}-failure.png", full_page=True)
            raise
        finally:
            page.screenshot(path=f"{shot}-last.png", full_page=True)
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


@SQLITE_ONLY
def test_rerun_a_failed_job_and_replay_a_dead_letter(page: Any, seeded: Seeded) -> None:
    from playwright.sync_api import expect

    failed = seeded.failed[0]
    assert seeded.states()[failed] == "failed"
    queue = page.locator(".sgen-queue")
    expect(queue).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    row = queue.locator(f".sgen-job-{failed}")
    expect(row).to_be_visible()
    # The row's cells follow its checkbox in the grid: task, then state.
    state_cell = queue.locator(f".sgen-job-{failed} + div + div")
    expect(state_cell).to_have_text("failed")

    row.locator("input[type=checkbox]").check()
    queue.locator("button.sgen-rerun").click()

    expect(queue.locator(".sgen-status")).to_contain_text(f"Re-ran 1 job: {failed}.")
    expect(state_cell).to_have_text("queued")
    assert seeded.states()[failed] == "queued"
    assert (ADMIN, "rerun", failed) in seeded.activity()
    page.screenshot(path=str(ARTIFACTS / "queue-rerun.png"), full_page=True)

    dead = min(seeded.dead_letters())
    page.get_by_role("tab", name=re.compile("dead letter|triage", re.IGNORECASE)).click()
    triage = page.locator(".sgen-triage")
    expect(triage).to_be_visible()
    triage.locator(f".sgen-job-{dead} input[type=checkbox]").check()
    triage.locator("button.sgen-replay").click()

    expect(triage.locator(".sgen-status").first).to_contain_text(f"Replayed 1 dead letter: {dead}.")
    wait_for(lambda: seeded.states()[dead] == "queued", what=f"dead letter {dead} replayed in the ledger")
    assert (ADMIN, "replay", dead) in seeded.activity()
    expect(triage.locator(f".sgen-job-{dead}")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "triage-replay.png"), full_page=True)


@SQLITE_ONLY
def test_activity_log_tab_shows_entries_filters_and_the_chain(page: Any, seeded: Seeded) -> None:
    """The Activity Log tab: the seeded stack's cancel and resolve, the chain verified, the action filter."""
    from playwright.sync_api import expect

    expect(page.locator(".sgen-queue")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    page.get_by_role("tab", name="Activity Log").click()
    view = page.locator(".sgen-activity")
    expect(view).to_be_visible()
    expect(view.locator(".sgen-activity-chain.sgen-chain-ok")).to_contain_text("Chain verified")
    table = view.locator(".sgen-activity-table")
    expect(table).to_contain_text(f"job {seeded.cancelled}")
    expect(table).to_contain_text(f"job {seeded.resolved}")
    view.locator(".sgen-activity-action select").select_option("resolve")
    expect(table).to_contain_text(f"job {seeded.resolved}")
    expect(table).not_to_contain_text(f"job {seeded.cancelled}")
    expect(view.locator(".sgen-page-label")).to_contain_text("1 entry")
    page.screenshot(path=str(ARTIFACTS / "activity-log.png"), full_page=True)


@SQLITE_ONLY
def test_workers_tab_shows_live_workers_and_queues(page: Any, seeded: Seeded, request: pytest.FixtureRequest) -> None:
    """The Workers tab: a registered worker with its host and pid, the priority queues, served as locally."""
    import socket as _socket

    from playwright.sync_api import expect

    from sgen_ops.runtime.execution import bind_hub
    from sgen_ops.runtime.workers import SgenWorker, worker_name

    hub = seeded.hub
    bind_hub(hub)  # the worker's settings come from the process's hub, not from a stack of its own
    worker = SgenWorker(hub.transport.ordered_queues, connection=hub.redis, name=worker_name(hub.settings.queue_prefix))
    worker.register_birth()
    try:
        expect(page.locator(".sgen-queue")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
        page.get_by_role("tab", name="Workers").click()
        view = page.locator(".sgen-workers")
        expect(view).to_be_visible()
        # Served too: the view reads GET /api/workers.
        table = view.locator(".sgen-workers-table")
        expect(table).to_contain_text(_socket.gethostname())
        expect(table).to_contain_text(str(worker.pid))
        expect(view.locator(".sgen-queues-table")).to_contain_text("normal")
        expect(view.locator(".sgen-live-toggle")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / f"workers-{request.node.callspec.id}.png"), full_page=True)
    finally:
        worker.register_death()


@SQLITE_ONLY
def test_live_queue_shows_new_jobs_and_keeps_the_selection(page: Any, seeded: Seeded) -> None:
    """The queue's Live toggle: a job enqueued meanwhile appears on its own, the ticked row stays ticked and
    the open detail stays open."""
    from playwright.sync_api import expect

    queue = page.locator(".sgen-queue")
    expect(queue).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    ticked = seeded.queued
    row = queue.locator(f".sgen-job-{ticked} input[type=checkbox]")
    row.check()
    queue.locator("button.sgen-open-detail").click()
    expect(queue.locator(".sgen-detail")).to_contain_text(str(ticked))
    queue.locator(".sgen-live-interval select").select_option("2 s")
    queue.locator("button.sgen-live-toggle").click()

    newer = seeded.hub.enqueue("test.ok", {"live": True}, account="globex", delay=3600)
    expect(queue.locator(f".sgen-job-{newer}")).to_be_visible()
    expect(row).to_be_checked()
    expect(queue.locator(".sgen-detail")).to_contain_text(str(ticked))
    page.screenshot(path=str(ARTIFACTS / "queue-live.png"), full_page=True)
    queue.locator("button.sgen-live-toggle").click()


@SQLITE_ONLY
def test_state_chips_throughput_and_schedules_as_an_operator_sees_them(
    page: Any, seeded: Seeded, request: pytest.FixtureRequest
) -> None:
    """The queue's state chips with their counts filter at a click; the throughput tab says which window it
    shows once loaded, with every task named in the chart; the schedules form asks for a task."""
    from playwright.sync_api import expect

    queue = page.locator(".sgen-queue")
    expect(queue).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    failed = seeded.admin.list_jobs(state="failed", per_page=1).total
    chip = queue.locator(".sgen-state-chip-failed")
    expect(chip).to_contain_text(f"failed · {failed}")
    chip.click()
    # "1 job" or "N jobs": an earlier test of the module may have re-run one of the seeded failures.
    expect(queue.locator(".sgen-page-label")).to_contain_text(re.compile(rf"\b{failed} jobs?\b"))
    page.screenshot(path=str(ARTIFACTS / "queue-state-chips.png"), full_page=True)

    page.get_by_role("tab", name="Throughput").click()
    view = page.locator(".sgen-throughput")
    expect(view.locator(".sgen-throughput-summary")).to_contain_text("Last 7d:", timeout=ACTION_TIMEOUT_MS)
    expect(view).not_to_have_class(re.compile("sgen-loading"))
    counts = view.locator(".sgen-counts-chart")
    for task in ("webhook.dispatch", "import.products", "test.boom"):
        expect(counts).to_contain_text(task, timeout=ACTION_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / f"throughput-{request.node.callspec.id}.png"), full_page=True)

    page.get_by_role("tab", name="Schedules").click()
    form = page.locator(".sgen-schedule-form")
    expect(form.locator(".sgen-form-task select")).to_have_value("choose a task…")
    page.screenshot(path=str(ARTIFACTS / "schedules.png"), full_page=True)


@SQLITE_ONLY
def test_pause_a_task_and_see_its_jobs_wait(page: Any, seeded: Seeded) -> None:
    """An administrator pauses the task picked beside the button: a job of it enqueued next is not
    run by a worker and the page marks it paused; resumed from the page, the worker runs it."""
    from playwright.sync_api import expect

    queue = page.locator(".sgen-queue")
    expect(queue).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    queue.locator(".sgen-task-filter input").fill("test.ok")
    queue.locator("button.sgen-apply").click()
    queue.locator("button.sgen-pause-task").click()  # nothing picked: the Task filter is the list's, not the pause's
    expect(queue.locator(".sgen-status")).to_contain_text("Pick the task to pause")
    assert seeded.admin.paused().empty
    queue.locator(".sgen-task-picker select").select_option("test.ok")
    queue.locator("button.sgen-pause-task").click()
    expect(queue.locator(".sgen-paused-line")).to_contain_text("task test.ok")
    assert seeded.admin.paused()["name"].tolist() == ["test.ok"]

    held = seeded.hub.enqueue("test.ok", {"paused": True}, account="globex")
    seeded.hub.work(burst=True)
    waiting = seeded.admin.get_job(held)
    assert (waiting.state, waiting.attempts) == ("queued", 0)
    queue.locator("button.sgen-refresh").click()
    table = queue.locator(".sgen-job-table")
    expect(table.locator(f".sgen-job-{held}")).to_be_visible()  # the newest job of the filtered task, first
    expect(table.locator(".sgen-paused-note").first).to_have_text("paused")
    expect(table.locator(".sgen-paused-badge").first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "queue-paused-task.png"), full_page=True)

    queue.locator("button.sgen-resume-task").click()
    expect(queue.locator(".sgen-paused-line")).not_to_contain_text("test.ok")
    seeded.hub.work(burst=True)
    assert seeded.admin.get_job(held).state == "succeeded"
    queue.locator("button.sgen-refresh").click()
    expect(table.locator(".sgen-paused-note")).to_have_count(0)
    expect(table.locator(".sgen-paused-badge")).to_have_count(0)


def _triage(page: Any) -> Any:
    from playwright.sync_api import expect

    expect(page.locator(".sgen-queue")).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    page.get_by_role("tab", name=re.compile("dead letter|triage", re.IGNORECASE)).click()
    triage = page.locator(".sgen-triage")
    expect(triage).to_be_visible()
    return triage


@SQLITE_ONLY
def test_triage_acts_only_on_the_dead_letter_the_operator_ticked(page: Any, seeded: Seeded) -> None:
    """A dead letter replayed from the page fails again and comes back: the refresh after the next action
    (an edit and replay of another) lists it unticked, and the editor keeps the job it names. A dead letter
    that changed after it was loaded into the editor is refused, with the reason."""
    from playwright.sync_api import expect

    hub = seeded.hub
    a, b = (hub.enqueue("test.boom", {"browser": n}, account="globex", max_attempts=1) for n in range(2))
    hub.work(burst=True)
    triage = _triage(page)
    triage.locator("button.sgen-refresh").first.click()
    row_a = triage.locator(f".sgen-job-{a} input[type=checkbox]")
    row_a.check()
    triage.locator("button.sgen-replay").click()
    expect(triage.locator(".sgen-status").first).to_contain_text(f"Replayed 1 dead letter: {a}.")
    expect(row_a).to_have_count(0)
    hub.work(burst=True)  # it fails again: a dead letter once more
    assert seeded.states()[a] == "dead-letter"

    triage.locator(f".sgen-job-{b} input[type=checkbox]").check()
    editing = triage.locator(".sgen-editing")
    expect(editing).to_contain_text(f"dead letter {b}")
    editor = triage.locator(".sgen-payload-editor textarea")
    expect(editor).to_have_value(re.compile(r'"browser": 1'))
    editor.fill('{"browser": 99}')
    triage.locator("button.sgen-edit-replay").click()
    expect(triage.locator(".sgen-edit-replay-result")).to_contain_text(f"from dead letter {b} with the edited payload")
    expect(row_a).to_be_visible()  # listed again by the refresh after the action...
    expect(row_a).not_to_be_checked()  # ...and not ticked: the operator ticked it before it failed again
    expect(editing).to_contain_text(f"dead letter {b}")
    expect(editor).to_have_value('{"browser": 99}')
    expect(triage.locator(".sgen-detail-header")).to_contain_text(f"Job {b}")
    page.screenshot(path=str(ARTIFACTS / "triage-refresh-keeps-the-choice.png"), full_page=True)

    # A is loaded now; it changes (replayed elsewhere, failed again) before "Replay edited": refused, saying why.
    row_a.check()
    expect(editing).to_contain_text(f"dead letter {a}")
    seeded.admin.replay(a)
    hub.work(burst=True)
    jobs_before = len(seeded.states())
    triage.locator("button.sgen-edit-replay").click()
    expect(triage.locator(".sgen-edit-replay-result")).to_contain_text(
        f"Dead letter {a} changed since it was loaded into the editor")
    assert len(seeded.states()) == jobs_before


@SQLITE_ONLY
def test_bulk_replay_shows_the_count_and_asks_first(page: Any, seeded: Seeded) -> None:
    """"Replay all matching" counts and asks; only "Confirm replay all" replays, and the outcome shows in the
    bulk panel."""
    from playwright.sync_api import expect

    hub = seeded.hub
    made = [hub.enqueue("test.boom", {"bulk": n}, account="globex", max_attempts=1) for n in range(3)]
    hub.work(burst=True)
    matching = seeded.dead_letters(task="test.boom")
    assert set(made) <= matching
    triage = _triage(page)
    triage.locator(".sgen-bulk-task input").fill("test.boom")
    triage.locator("button.sgen-bulk-replay").click()
    n = seeded.admin.replay_dead_letters(task="test.boom", dry_run=True)
    assert n >= len(made)
    expect(triage.locator(".sgen-bulk-count")).to_contain_text(f"{n} dead letters match")
    expect(triage.locator(".sgen-bulk-result")).to_contain_text(f"Replay queues {n} dead letters again")
    assert seeded.dead_letters(task="test.boom") == matching  # asked, nothing done
    confirm = triage.locator("button.sgen-bulk-confirm-replay")
    expect(confirm).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "triage-bulk-confirm.png"), full_page=True)
    confirm.click()
    expect(triage.locator(".sgen-bulk-result")).to_contain_text(f"Replayed {n} dead letters.")
    expect(confirm).to_be_hidden()
    assert not seeded.dead_letters(task="test.boom")
    assert {seeded.states()[i] for i in made} == {"queued"}
