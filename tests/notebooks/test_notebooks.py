"""The operator notebooks run top to bottom against a seeded stack, the way ``make demo HEADLESS=1`` and
``pytest --nbval-lax`` run them, and show what an operator expects to see."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pandas as pd
import psutil
import pytest
from sqlalchemy import select

import sgen_ops.surface.operations
from sgen_ops.embedded import stop_process, stop_redis
from sgen_ops.ledger import audit, stats
from sgen_ops.ledger.store import Job
from sgen_ops.ops import demo as sgen_demo
from sgen_ops.ops import notebooks_run, runbooks

from ..api.conftest import free_port
from ..conftest import ROOT, Stack, outliving
from .conftest import ADMIN, SQLITE_ONLY, Seeded
from .reading import errors_of, outputs, text_of

NOTEBOOKS = ROOT / "notebooks"
OPERATOR_NOTEBOOKS = ("01_queue", "02_dead_letter_triage", "03_schedules", "04_throughput", "app")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PLOTLY = "application/vnd.plotly.v1+json"


def test_notebooks_are_committed_clean() -> None:
    """No outputs in git; each operator notebook starts from operator_session(); each runbook has one
    cell tagged parameters; the Voila app is a single code cell."""
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(OPERATOR_NOTEBOOKS)
    for path in [*NOTEBOOKS.glob("*.ipynb"), *NOTEBOOKS.glob("runbooks/*.ipynb")]:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3", path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        if path.parent.name == "runbooks":
            assert len(tagged) == 1, path.name
        else:
            first = next(c for c in code if c not in tagged)
            assert "operator_session()" in first.source, f"{path.name} does not start from operator_session()"
    app = nbformat.read(str(NOTEBOOKS / "app.ipynb"), as_version=4)
    assert [c.cell_type for c in app.cells] == ["code"]


def test_every_notebook_and_runbook_runs_headless(seeded: Seeded, tmp_path: Path) -> None:
    """``execute_all`` (make demo HEADLESS=1): every notebook and every runbook as a dry run, into reports/."""
    home = seeded.hub.home
    before_states, before_log = seeded.states(), seeded.activity()

    assert notebooks_run.execute_all(home, operator=ADMIN) == 0

    reports = home / "reports"
    for name in OPERATOR_NOTEBOOKS:
        assert errors_of(reports / f"{name}.ipynb") == []
    for name in runbooks.available():
        assert errors_of(reports / "runbooks" / f"{name}.ipynb") == []
    # Dry runs and views change nothing, and write nothing to the Activity Log.
    assert seeded.states() == before_states
    assert seeded.activity() == before_log

    # 01: the queue view is displayed, and the counts per state are those of the ledger.
    queue = reports / "01_queue.ipynb"
    assert any(WIDGET_VIEW in o.get("data", {}) for o in outputs(queue))
    assert re.search(rf"^failed\s+{len(seeded.failed)}$", text_of(queue), re.MULTILINE)

    # 02: dead letters grouped by task and error code, matching the ledger.
    dead = seeded.admin.list_jobs(state="dead-letter", per_page=1000).to_frame()
    causes = dead.groupby(["task", "last_error_code"]).size()
    triage = text_of(reports / "02_dead_letter_triage.ipynb")
    assert f"{len(dead)} dead letter(s) in {len(causes)} cause(s)" in triage
    for task, code in causes.index:
        assert task in triage and code in triage

    # 03: the schedules frame lists the demo schedules.
    schedules = text_of(reports / "03_schedules.ipynb")
    for task in ("report.weekly", "cache.warm", "email.digest"):
        assert task in schedules
    # Retention as the form takes it (7d), not a float of days (7.0); every as an interval (5m).
    assert re.search(r"\b\d+d\b", schedules) and not re.search(r"\b\d+\.0\b", schedules)
    assert "5m" in schedules

    # 04: the demo's week (the default window) as a CSV in export_dir (reports/ when headless), one row per task
    # that had events, counts as throughput says; nothing beside the notebooks.
    exported = sorted(reports.glob("throughput_7d_*.csv"))
    assert not list(notebooks_run.NOTEBOOKS.glob("*.csv"))
    assert len(exported) == 1
    with exported[0].open() as fh:
        rows = {r["task"]: r for r in csv.DictReader(fh)}
    expected = seeded.admin.throughput("7d").set_index("task")
    assert set(rows) == set(expected.index)
    for task, counts in expected.iterrows():
        assert int(float(rows[task]["succeeded"])) == counts["succeeded"]
        assert int(float(rows[task]["dead_lettered"])) == counts["dead_lettered"]
    charts = [o for o in outputs(reports / "04_throughput.ipynb") if PLOTLY in o.get("data", {})]
    assert len(charts) == 3  # outcomes per task, the window's series, and 90 days from the rollups
    # The analyst's DuckDB cell over ops.history(): one row per task and place (ledger or archive).
    assert "attempts_per_job" in text_of(reports / "04_throughput.ipynb")

    # The throughput report runbook wrote its artifacts under reports/.
    artifacts = sorted(p.suffix for p in (reports / "throughput_report").iterdir())
    assert artifacts == [".csv", ".html", ".js"]
    # The replay runbook's dry run counted every dead letter and said it changed nothing.
    replay = text_of(reports / "runbooks" / "replay_dead_letters.ipynb")
    assert f"DRY RUN: would replay {len(dead)} dead letter(s); nothing changed" in replay


def test_a_failing_notebook_fails_the_headless_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cell that raises: execute_all names the notebook and the exception, keeps the copy, returns 1."""
    broken = tmp_path / "notebooks"
    (broken / "runbooks").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('cell broke')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(broken / "broken.ipynb"))
    monkeypatch.setattr(notebooks_run, "NOTEBOOKS", broken)
    monkeypatch.setattr(runbooks, "RUNBOOKS", broken / "runbooks")

    monkeypatch.setenv("SGEN_OPS_HOME", str(tmp_path / "home"))

    assert notebooks_run.execute_all(tmp_path / "home", operator=ADMIN) == 1

    out = capsys.readouterr().out
    assert "FAILED  broken.ipynb" in out and "RuntimeError: cell broke" in out
    assert "0 of 1 notebooks ran" in out
    assert errors_of(tmp_path / "home" / "reports" / "broken.ipynb") == ["RuntimeError: cell broke"]


@SQLITE_ONLY
def test_nbval_lax_runs_every_notebook(seeded: Seeded, tmp_path: Path) -> None:
    """``pytest --nbval-lax notebooks/*.ipynb``: every cell runs without error in a fresh kernel. On a copy of
    the notebooks, as an operator's working copy: what they write (the throughput CSV goes to the notebook's
    folder by default) stays out of the checkout."""
    copy = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, copy)
    paths = sorted(p.name for p in copy.glob("*.ipynb"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", *paths],
        cwd=copy, env=seeded.env(), capture_output=True, text=True, timeout=240,
    )
    assert list(copy.glob("throughput_7d_*.csv")), "the throughput notebook exports beside itself by default"
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # One test item per code cell, all passed.
    assert re.search(r"\b\d+ passed\b", result.stdout) and "failed" not in result.stdout.splitlines()[-1]


@SQLITE_ONLY
def test_triage_notebook_works_for_a_viewer(seeded: Seeded, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A viewer runs the triage notebook: the grouping shows, and the replay cell says why it does nothing."""
    monkeypatch.setenv("SGEN_OPS_OPERATOR", "ops-viewer")
    out = runbooks.execute(NOTEBOOKS / "02_dead_letter_triage.ipynb", tmp_path / "triage-viewer.ipynb")
    assert errors_of(out) == []
    text = text_of(out)
    assert "viewer may not replay dead letters" in text
    assert f"{len(seeded.dead_letters())} dead letter(s)" in text


@pytest.mark.slow
@SQLITE_ONLY
def test_every_notebook_and_runbook_runs_as_a_client_of_the_api(
    seeded: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same headless run with ``SGEN_OPS_API_URL`` and a token, as ``make demo HEADLESS=1`` does a second
    time: the kernels are clients of ``sgen-ops serve`` and get no ledger or Redis they could reach."""
    from ..api.conftest import start_server

    server, url = start_server(seeded.stack)
    try:
        monkeypatch.setenv("SGEN_OPS_API_URL", url)
        monkeypatch.setenv("SGEN_OPS_API_TOKEN", seeded.hub.create_token(ADMIN))
        monkeypatch.setenv("SGEN_OPS_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
        monkeypatch.setenv("SGEN_OPS_REDIS_URL", "redis://127.0.0.1:1/0")
        before_states, before_log = seeded.states(), seeded.activity()
        reports = tmp_path / "served"
        assert notebooks_run.execute_all(seeded.hub.home, operator=ADMIN, reports=reports) == 0
        for name in OPERATOR_NOTEBOOKS:
            assert errors_of(reports / f"{name}.ipynb") == []
        for name in runbooks.available():
            assert errors_of(reports / "runbooks" / f"{name}.ipynb") == []
        # The notebooks' operator is the remote client (its repr names the server).
        assert f"RemoteOperations as '{ADMIN}'" in text_of(reports / "01_queue.ipynb")
        assert seeded.states() == before_states
        assert seeded.activity() == before_log
    finally:
        server.stop()


def _demo_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of ``sgen-ops demo`` on an embedded home of its own (no configured ledger or Redis)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SGEN_OPS_", "JUPYTER"))}
    return {**env, "SGEN_OPS_HOME": str(home), "SGEN_OPS_API_PORT": "0", **extra}


def _alive(pid: int) -> bool:
    """Running, and not a zombie (an exited child its parent never reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_demo_leaves_the_checkout_clean_and_down_stops_everything(tmp_path: Path) -> None:
    """``make demo``: JupyterLab saves into a working copy under the home, so the tracked notebooks keep no
    outputs; ``make down`` then stops JupyterLab, its kernels, the worker, the scheduler, the API and Redis,
    none of them left running or a zombie."""
    home, runtime = tmp_path / "home", tmp_path / "jupyter-runtime"
    env = _demo_env(home, BROWSER="true", JUPYTER_RUNTIME_DIR=str(runtime))
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen([sys.executable, "-m", "sgen_ops.cli", "demo"], env=env, stdout=log, stderr=log)
    started: list[int] = []
    closing = contextlib.ExitStack()
    try:
        deadline = time.monotonic() + 180
        while not list(runtime.glob("jpserver-*.json")):
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "JupyterLab did not start within 180 s"
            time.sleep(0.5)
        server = json.loads(next(runtime.glob("jpserver-*.json")).read_text())
        api = httpx.Client(base_url=server["url"].rstrip("/"), headers={"Authorization": f"token {server['token']}"})
        closing.callback(api.close)
        page = api.get("/lab").text
        config = page.split('id="jupyter-config-data" type="application/json">', 1)[1].split("</script>", 1)[0]
        assert json.loads(config)["news"] == {"disabled": True}, "JupyterLab would ask about its news feed"
        started_kernel = api.post("/api/kernels", json={"name": "python3"})
        assert started_kernel.is_success, started_kernel.text
        kernel = started_kernel.json()["id"]
        # The operator runs the queue notebook: JupyterLab saves it with its outputs.
        model = api.get("/api/contents/01_queue.ipynb").json()
        cell = next(c for c in model["content"]["cells"] if c["cell_type"] == "code")
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "ran\n"}]
        cell["execution_count"] = 1
        saving = {"type": "notebook", "content": model["content"]}
        assert api.put("/api/contents/01_queue.ipynb", json=saving).is_success
        assert api.get(f"/api/kernels/{kernel}").is_success
        api.close()

        saved = nbformat.read(str(home / "notebooks" / "01_queue.ipynb"), as_version=4)
        assert any(c.get("outputs") for c in saved.cells)
        test_notebooks_are_committed_clean()
        status = subprocess.run(["git", "status", "--porcelain", "notebooks"], cwd=ROOT, capture_output=True, text=True)
        assert status.stdout == ""

        pids = {p.stem: int(p.read_text()) for p in (home / "pids").glob("*.pid")}
        assert set(pids) == {"worker", "scheduler", "api", "jupyterlab"}
        kernels = [p.pid for p in psutil.Process(pids["jupyterlab"]).children(recursive=True)]
        assert kernels, "the kernel JupyterLab started is not among its descendants"
        redis_pid = int((home / "redis.pid").read_text())
        started = [*pids.values(), *kernels, redis_pid]

        down = subprocess.run([sys.executable, "-m", "sgen_ops.cli", "down"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert down.returncode == 0, down.stderr
        for name in ("worker", "scheduler", "api", "jupyterlab"):
            assert f"stopped {name}" in down.stdout
        assert demo.wait(timeout=60) == 0
        assert [pid for pid in started if _alive(pid)] == []
    finally:
        closing.close()
        log.close()
        # Whatever the demo started, also when the test failed before reading its pids: its descendants, and
        # any process working in its home (JupyterLab's --notebook-dir names it).
        if demo.poll() is None:
            started += [c.pid for c in psutil.Process(demo.pid).children(recursive=True)]
        outliving(home, grace=0)
        for pid in started:
            if _alive(pid):
                stop_process(pid)
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        stop_redis(home)  # the embedded Redis the demo started, also when it failed before its pids were read


@pytest.mark.slow
def test_headless_demo_runs_every_notebook_and_stops_the_redis_it_started(tmp_path: Path) -> None:
    """``make demo HEADLESS=1`` on a fresh home: exit 0, a week of history behind the charts and a month before
    it, the older part past the archive horizon in the archive, and no redis-server left running after it."""
    home = tmp_path / "home"
    result = subprocess.run([sys.executable, "-m", "sgen_ops.cli", "demo", "--headless"], env=_demo_env(home),
                            capture_output=True, text=True, timeout=900)
    # redis-server runs in the home (its --dir) and removes its pid file as it stops.
    left = [p for p in psutil.process_iter(["name", "cwd"]) if p.info["name"] == "redis-server"
            and p.info["cwd"] == str(home)]
    try:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
        seeded = re.search(r"seeded 40 days of history \((\d+) jobs, (\d+) of them archived", result.stdout)
        assert seeded and 0 < int(seeded[2]) < int(seeded[1]), result.stdout[-2000:]
        assert list((home / "archive").rglob("*.parquet"))
        assert "stopped the embedded Redis this run started" in result.stdout
        assert left == []
        assert not (home / "redis.url").exists()
    finally:
        for proc in left:
            stop_process(proc.pid)


def _payloads(hub: Any) -> dict[str, list[dict[str, Any]]]:
    with hub.ledger.read() as session:
        rows = session.execute(select(Job.task, Job.payload)).all()
    out: dict[str, list[dict[str, Any]]] = {}
    for task, payload in rows:
        out.setdefault(task, []).append(payload)
    return out


def test_demo_history_spreads_over_the_week_through_the_ledger(stack: Stack) -> None:
    """The demo's history: jobs on every day and over most hours, a working-day rhythm, failures, retries
    and dead letters, run times that differ by task, operator actions at their own times, a chain that
    verifies, and sgen-ops's clock back to the wall clock afterwards."""
    hub = stack.hub()
    before = datetime.now(UTC)
    # Three working days ending last Friday at 18:00 UTC: the history follows the weekday, so a fixed end
    # keeps what it holds the same whatever day the test runs on.
    friday = (before - timedelta(days=(before.weekday() - 4) % 7)).replace(hour=18, minute=0, second=0, microsecond=0)
    end = friday if friday <= before else friday - timedelta(days=7)
    created = sgen_demo.seed_history(hub, days=3, per_day=40, end=end)
    assert created > 60
    series = stats.throughput_series(hub.ledger, "11d", "1h")
    hours = series.groupby("at")["count"].sum()
    assert hours.index.normalize().nunique() >= 3
    assert len(hours) >= 24
    assert hours.max() > 3 * hours.median() or hours.quantile(0.9) > 2 * hours.quantile(0.1)
    counts = hub.as_operator(ADMIN).throughput("11d").set_index("task")
    assert counts["succeeded"].sum() > 0 and counts["failed"].sum() > 0 and counts["dead_lettered"].sum() > 0
    # Each task is given its own amount of work (wall time scaled into recorded run time), imports more than
    # webhooks; the run times recorded depend on the machine, so the plan is what is checked.
    work = {task: sorted(p["work_ms"] for p in payloads) for task, payloads in _payloads(hub).items()}
    assert work["import.products"][len(work["import.products"]) // 2] > 3 * work["webhook.dispatch"][
        len(work["webhook.dispatch"]) // 2]
    assert len(stats.run_time_percentiles(hub.ledger, "11d")) >= 4
    log = hub.as_operator(ADMIN).activity_log(since=end - timedelta(days=4))
    assert {"dismiss", "rerun"} <= set(log["action"])
    assert log.loc[log["action"] == "dismiss", "at"].max() < pd.Timestamp(before - timedelta(hours=6))
    assert audit.verify(hub.ledger).ok
    assert abs(sgen_ops.surface.operations.utcnow() - datetime.now(UTC)) < timedelta(minutes=1)


def test_the_demos_jupyterlab_asks_nothing_about_news(tmp_path: Path) -> None:
    """JupyterLab started with the demo's arguments: the notification settings say "never fetch news" (the
    prompt about official Jupyter news shows only while fetchNews is "none") and no update check."""
    home, notebooks = tmp_path / "home", tmp_path / "notebooks"
    notebooks.mkdir()
    port = free_port()
    token = "demo-lab-test"
    argv = [sys.executable, "-m", "jupyter", "lab", *sgen_demo.lab_arguments(home, notebooks), "--no-browser",
            f"--port={port}", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings")}
    lab = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/lab/api/settings/@jupyterlab/apputils-extension:notification"
        deadline = time.monotonic() + 120
        while True:
            try:
                answer = httpx.get(url, params={"token": token}, timeout=5)
                break
            except httpx.HTTPError:
                assert lab.poll() is None and time.monotonic() < deadline, "jupyter lab did not answer"
                time.sleep(0.5)
        assert answer.status_code == 200, answer.text
        # Overrides become the defaults of the settings' schema, what the page starts from.
        defaults = {k: v.get("default") for k, v in answer.json()["schema"]["properties"].items()}
        assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
    finally:
        sgen_demo.stop_tree(lab.pid)
        lab.wait(timeout=30)
