"""SGEN demo data: operators, schedules and a realistic mix of jobs, the same for the same seed."""

from __future__ import annotations

import random
from typing import Any

import sgen_ops

ACCOUNTS = ("acme", "globex", "initech")
OPERATORS = (
    ("ops-admin", "administrator", None),
    ("ops-editor", "editor", None),
    ("ops-viewer", "viewer", None),
    ("acme-viewer", "viewer", "acme"),
)
# The seed's schedules: report.weekly weekly, cache.warm every few minutes, email.digest daily.
SCHEDULES: tuple[dict[str, Any], ...] = (
    {"task": "report.weekly", "cron": "0 6 * * 1", "payload": {"report": "sales", "period": "{tick:%G-W%V}"}},
    {"task": "cache.warm", "every": "5m", "payload": {"keys": ["home", "catalog", "search"]}},
    {"task": "email.digest", "cron": "0 7 * * *", "payload": {"period": "{tick:%Y-%m-%d}", "recipients": []}},
)


def _email(rng: random.Random, account: str) -> str:
    name = rng.choice(["ana", "bo", "chen", "dara", "eli", "fay", "gus"])
    domain = "bounce.invalid" if rng.random() < 0.08 else f"{account}.example.com"
    return f"{name}{rng.randint(1, 99)}@{domain}"


def job_specs(rng: random.Random, count: int) -> list[tuple[str, dict[str, Any], str]]:
    """``count`` (task, payload, account) triples; failure modes are decided here, by the seed."""
    specs: list[tuple[str, dict[str, Any], str]] = []
    for _ in range(count):
        account = rng.choice(ACCOUNTS)
        kind = rng.choices(
            ["webhook.dispatch", "email.digest", "import.products", "cache.warm", "report.weekly"],
            weights=[40, 20, 15, 15, 10],
        )[0]
        work_ms = rng.choice([0, 0, 5, 20])
        if kind == "webhook.dispatch":
            host = rng.choices(["hooks", "flaky", "api.down"], weights=[80, 15, 5])[0]
            domain = f"{host}.down.invalid" if host == "api.down" else f"{host}.{account}.example.com"
            payload: dict[str, Any] = {
                "url": f"https://{domain}/sgen/events",
                "event": rng.choice(["order.created", "order.paid", "customer.updated", "refund.issued"]),
                "event_id": f"evt_{rng.getrandbits(48):012x}",
                "headers": {"Authorization": f"Bearer whsec_{rng.getrandbits(64):016x}"},
                "secret": f"sig_{rng.getrandbits(64):016x}",
                "flakiness": 0.5 if host == "flaky" else 0.0,
                "body": {"order_id": rng.randint(1000, 99999), "total": round(rng.uniform(5, 500), 2)},
            }
        elif kind == "email.digest":
            payload = {
                "period": f"2026-11-{rng.randint(1, 22):02d}",
                "recipients": [{"email": _email(rng, account), "name": "Subscriber"} for _ in range(rng.randint(1, 4))],
                "smtp": {"host": "smtp.sgen.example.com", "password": f"smtp-{rng.getrandbits(40):010x}"},
            }
        elif kind == "import.products":
            rows: list[dict[str, Any]] = [
                {"sku": f"SKU-{rng.randint(1000, 9999)}", "price": round(rng.uniform(1, 300), 2)}
                for _ in range(rng.randint(3, 12))
            ]
            if rng.random() < 0.15:
                rows[rng.randrange(len(rows))]["price"] = -round(rng.uniform(1, 50), 2)
            payload = {
                "source_url": f"sftp://feeds.{account}.example.com/products.csv",
                "credentials": {"user": f"{account}-import", "api_key": f"key_{rng.getrandbits(64):016x}"},
                "customer": {"email": f"buyer@{account}.example.com"},
                "rows": rows,
                "provider_timeout_attempts": 1 if rng.random() < 0.1 else 0,
            }
        elif kind == "cache.warm":
            payload = {"keys": rng.sample(["home", "catalog", "search", "cart", "pricing"], k=rng.randint(1, 4))}
        else:
            payload = {
                "report": rng.choices(["sales", "inventory", "traffic", "forecast"], weights=[40, 30, 25, 5])[0],
                "period": f"2026-W{rng.randint(40, 47)}",
                "storage": {"bucket": f"{account}-reports", "access_token": f"tok_{rng.getrandbits(64):016x}"},
            }
        payload["work_ms"] = work_ms
        specs.append((kind, payload, account))
    return specs


def seed(hub: sgen_ops.Hub, *, seed: int = 42, jobs: int = 150) -> dict[str, int]:
    """Register the demo operators and schedules (once) and enqueue ``jobs`` demo jobs."""
    from sqlalchemy import select

    from sgen_ops.ledger.store import Operator, Schedule

    rng = random.Random(seed)
    with hub.ledger.read() as session:
        existing = set(session.scalars(select(Operator.name)))
        has_schedules = session.scalar(select(Schedule.id).limit(1)) is not None
    for name, role, account in OPERATORS:
        if name not in existing:
            hub.add_operator(name, role, account=account)
    schedules = 0
    if not has_schedules:
        admin = hub.as_operator("ops-admin")
        for spec in SCHEDULES:
            admin.create_schedule(spec["task"], cron=spec.get("cron"), every=spec.get("every"), payload=spec["payload"])
            schedules += 1
    ids = []
    for task, payload, account in job_specs(rng, jobs):
        # A third run on a budget of one attempt, so a fresh demo already has dead letters to triage.
        budget = 1 if rng.random() < 0.33 else None
        ids.append(hub.enqueue(task, payload, account=account, max_attempts=budget))
    return {"jobs": len(ids), "schedules": schedules}
