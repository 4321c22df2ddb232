"""SGEN's task catalog: the background work the platform runs, with realistic failure modes.

Failures are deterministic functions of the payload and the attempt number, so that demos and
tests repeat exactly: the demo data generator (``worker.demo``) decides, from its seed, which
payloads will fail and how.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import sgen_ops
from sgen_ops import TaskError


def _simulate_work(payload: dict[str, Any]) -> None:
    # Demo payloads may ask for a little wall time so that running states are visible.
    ms = payload.get("work_ms", 0)
    if ms:
        time.sleep(min(float(ms), 60_000) / 1000)


def _chance(*parts: object) -> float:
    """A stable number in [0, 1) from the given parts: the same inputs always give the same draw."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@sgen_ops.task("email.digest", sensitive=["recipients.*.email", "smtp.password"], max_attempts=3, backoff=60)
def email_digest(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Send the periodic activity digest to an account's subscribers."""
    sent = 0
    for recipient in payload.get("recipients", []):
        ctx.checkpoint()
        email = str(recipient.get("email", ""))
        if email.endswith("@bounce.invalid"):
            raise TaskError("smtp_rejected", f"550 mailbox unavailable for {email}")
        sent += 1
    _simulate_work(payload)
    return {"sent": sent}


@sgen_ops.task("report.weekly", sensitive=["storage.access_token"], max_attempts=3, priority="low", backoff=120)
def report_weekly(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Build the weekly report artifact and upload it to the account's storage."""
    report = payload.get("report", "sales")
    if report not in ("sales", "inventory", "traffic"):
        raise TaskError("unknown_report", f"no report named {report!r}; known: sales, inventory, traffic")
    for _section in payload.get("sections", ["summary", "detail"]):
        ctx.checkpoint()
        _simulate_work(payload)
    if payload.get("storage", {}).get("quota_exceeded"):
        raise TaskError("storage_quota", "report storage quota exceeded (507 Insufficient Storage)")
    return {"report": report, "period": payload.get("period")}


@sgen_ops.task(
    "import.products", sensitive=["credentials.api_key", "customer.email"], max_attempts=3, backoff=30, timeout=1800
)
def import_products(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Import a batch of products from a supplier feed, row by row."""
    imported = 0
    for index, row in enumerate(payload.get("rows", [])):
        ctx.checkpoint()
        if not row.get("sku"):
            raise TaskError("bad_row", f"row {index}: missing sku")
        price = row.get("price")
        if not isinstance(price, int | float) or price < 0:
            raise TaskError("bad_row", f"row {index} (sku {row['sku']}): price {price!r} is not a non-negative number")
        imported += 1
    if payload.get("provider_timeout_attempts", 0) >= ctx.attempt:
        raise TaskError("provider_timeout", "supplier feed connection timed out after 30s")
    _simulate_work(payload)
    return {"imported": imported}


@sgen_ops.task("cache.warm", max_attempts=2, priority="low")
def cache_warm(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Pre-compute the storefront caches named in the payload."""
    for _key in payload.get("keys", []):
        ctx.checkpoint()
    _simulate_work(payload)
    return {"warmed": len(payload.get("keys", []))}


@sgen_ops.task("webhook.dispatch", sensitive=["headers.*", "secret"], max_attempts=5, priority="high", backoff=30)
def webhook_dispatch(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Deliver one platform event to a subscriber's webhook endpoint."""
    url = str(payload.get("url", ""))
    if not url.startswith("https://"):
        raise TaskError("invalid_endpoint", f"webhook endpoint {url!r} must be an https:// URL")
    # Endpoints on down.invalid never answer; flaky ones time out on some attempts, the same ones every run.
    if ".down.invalid" in url:
        raise TaskError("webhook_timeout", f"POST {url} timed out after 10s")
    flakiness = float(payload.get("flakiness", 0.0))
    if flakiness and _chance(payload.get("event_id"), ctx.attempt) < flakiness:
        raise TaskError("webhook_timeout", f"POST {url} timed out after 10s")
    _simulate_work(payload)
    return {"status": 200}
