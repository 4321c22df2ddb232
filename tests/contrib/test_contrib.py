"""contrib/: the Prometheus rules pass promtool (syntax and their own unit tests), the Grafana dashboard's queries
are PromQL, and every metric the rules and the dashboard name is one a real ``sgen-ops serve`` exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

import sgen_ops
from sgen_ops.core.times import utcnow
from sgen_ops.ledger.store import JobEvent

from ..api.conftest import Api, start_server
from ..conftest import ROOT, Stack

CONTRIB = ROOT / "contrib"
RULES = CONTRIB / "prometheus" / "sgen-ops-rules.yml"
RULE_TESTS = CONTRIB / "prometheus" / "sgen-ops-rules.test.yml"
DASHBOARD = CONTRIB / "grafana" / "sgen-ops-dashboard.json"
# A metric's name; a recording rule's (level:metric:operations) has colons.
METRIC = re.compile(r"\bsgen_ops_[a-z0-9_]+(?![a-z0-9_:])")
RECORDED = re.compile(r"\bsgen_ops_[a-z0-9_]*:[a-z0-9_:]+")
# Grafana's variables, as a query would be sent with them filled in.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", '"$task"': '".*"'}


def promtool() -> str:
    """Debian's promtool (package prometheus); CI must have it."""
    found = shutil.which("promtool")
    if found:
        return found
    reason = "promtool is not installed (Debian package prometheus)"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI must check the alert rules: {reason}")
    pytest.skip(reason)


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard's panels, with Grafana's variables filled in."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    filled = []
    for query in queries:
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        filled.append(query)
    return filled


def rule_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_alert_rules_pass_promtool() -> None:
    """`promtool check rules` accepts the file, and `promtool test rules` shows each alert firing when it should
    (no worker, a queue that waits, a stopped scheduler, dead letters left to grow, a task failing above its
    usual, no metrics) and not otherwise (a task whose failures are its usual, dead letters that were triaged)."""
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    alerts = {r.get("alert") for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]} - {None}
    assert {"SgenOpsTaskFailureRateHigh", "SgenOpsDeadLettersGrowing", "SgenOpsOldestQueuedJobTooOld",
            "SgenOpsNoLiveWorker", "SgenOpsNoScheduleTick"} <= alerts
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}
    used = {name for expr in rule_expressions() for name in RECORDED.findall(expr)}
    assert used <= recorded, f"rules use recordings no rule makes: {sorted(used - recorded)}"
    tested = subprocess.run([tool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True,
                            text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert has a unit test that expects it to fire.
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {t["alertname"] for case in cases for t in case["alert_rule_test"] if t.get("exp_alerts")}
    assert fired == alerts


def test_the_dashboard_queries_are_promql(tmp_path: Path) -> None:
    """Each panel's query parses as PromQL (checked by promtool as a recording rule), and the dashboard shows
    what an operator looks for: throughput, failure rate, dead letters, queue age, run-time percentiles, workers."""
    tool = promtool()
    queries = dashboard_queries()
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{n}", "expr": q}
                                                         for n, q in enumerate(queries)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    board = json.loads(DASHBOARD.read_text())
    titles = " | ".join(p["title"] for p in board["panels"]).lower()
    for topic in ("throughput", "failure rate", "dead letters", "queue age", "run time percentiles", "workers"):
        assert topic in titles, topic
    assert any("histogram_quantile(0.99" in q for q in queries)


def _seed_every_metric(stack: Stack, hub: sgen_ops.Hub) -> str:
    """Jobs that succeed, fail, retry and dead-letter, a schedule that ticked, and an operator's token."""
    hub.add_operator("prometheus", "viewer")
    admin_name = "metrics-admin"
    hub.add_operator(admin_name, "administrator")
    for n in range(3):
        hub.enqueue("test.ok", {"n": n}, account="acme")
    hub.enqueue("test.boom", {"n": 1}, account="acme", max_attempts=1)
    hub.enqueue("test.flaky", {"succeed_on": 2}, account="globex")
    hub.as_operator(admin_name).create_schedule("test.ok", every="1m")
    hub.tick(now=utcnow() + timedelta(minutes=2))
    hub.work(burst=True)
    return hub.create_token("prometheus")


def test_every_metric_the_rules_and_dashboard_name_is_exported(stack: Stack, hub: sgen_ops.Hub) -> None:
    """A real `sgen-ops serve`'s /metrics, scraped with a viewer's token (the scraper's), has a sample of every
    metric the alert rules and the dashboard query."""
    token = _seed_every_metric(stack, hub)
    proc, url = start_server(stack)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            assert http.get("/api/accounts/*/jobs").status_code == 200  # an action, so that actions are counted
            answer = http.get("/metrics")
    finally:
        proc.stop()
    assert answer.status_code == 200, answer.text
    exported = {s.name for family in text_string_to_metric_families(answer.text) for s in family.samples}
    named = set(METRIC.findall(RULES.read_text())) | set(METRIC.findall(DASHBOARD.read_text()))
    assert "sgen_ops_attempt_run_seconds_bucket" in named and "sgen_ops_schedule_tick_overdue_seconds" in named
    assert sorted(named - exported) == []


def test_the_new_metrics_count_what_happened(hub: sgen_ops.Hub, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """State changes of this hour by task, the last schedule tick, and how late the most overdue tick is."""
    admin = "metrics-admin"
    hub.add_operator(admin, "administrator")
    for n in range(2):
        hub.enqueue("test.ok", {"n": n}, account="acme")
    hub.enqueue("test.boom", {"n": 1}, account="acme")  # two attempts, then the dead letter
    hub.work(burst=True)
    assert api.http(admin).get("/metrics").status_code == 200
    with hub.ledger.read() as session:  # scraped within the hour of the last change, whenever the test runs
        last_change = session.scalar(select(func.max(JobEvent.at)))
    text = _scrape_at(hub, last_change, monkeypatch)
    assert sample(text, "sgen_ops_job_state_changes_total", task="test.ok", state="succeeded") == 2
    assert sample(text, "sgen_ops_job_state_changes_total", task="test.slow", state="failed") == 0  # from zero
    assert sample(text, "sgen_ops_job_state_changes_total", task="test.boom", state="failed") == 2
    assert sample(text, "sgen_ops_job_state_changes_total", task="test.boom", state="dead-letter") == 1
    assert sample(text, "sgen_ops_last_schedule_tick_timestamp_seconds") == 0  # never ticked
    assert sample(text, "sgen_ops_schedule_tick_overdue_seconds") == 0  # no schedule

    schedule = hub.as_operator(admin).create_schedule("test.ok", every="1m")
    later = utcnow() + timedelta(minutes=3)
    overdue = _scrape_at(hub, later, monkeypatch)
    assert 100 < sample(overdue, "sgen_ops_schedule_tick_overdue_seconds") < 200  # due after 1 minute, 3 minutes on
    hub.tick(now=later)
    after = _scrape_at(hub, later, monkeypatch)
    assert sample(after, "sgen_ops_schedule_tick_overdue_seconds") == 0
    assert abs(sample(after, "sgen_ops_last_schedule_tick_timestamp_seconds") - utcnow().timestamp()) < 300
    hub.as_operator(admin).pause_schedule(schedule)
    paused = _scrape_at(hub, later + timedelta(hours=1), monkeypatch)
    assert sample(paused, "sgen_ops_schedule_tick_overdue_seconds") == 0


def _scrape_at(hub: sgen_ops.Hub, moment: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """The metrics as a scrape at ``moment`` reads them (a fresh collector: no cache)."""
    from sgen_ops.api import metrics

    with monkeypatch.context() as clock:
        clock.setattr(metrics, "utcnow", lambda: moment)
        return metrics.Metrics(hub).exposition().decode()


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")
