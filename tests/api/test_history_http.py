"""History and archived jobs over HTTP: ``GET /api/accounts/{account_id}/history`` as JSON and Parquet, and the
remote client, answering what the local surface answers for each role."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest

import sgen_ops
from sgen_ops import AccessDenied, InvalidTransition, NotFound
from tests.integration.test_surface_fixtures import add_operators

from .conftest import Api

SECRET = {"credentials": {"api_key": "sk-live-51HxQ"}, "rows": [{"card": "4242"}]}


@pytest.fixture
def archived(hub: sgen_ops.Hub) -> dict[str, int]:
    add_operators(hub)
    hub.add_operator("acme-viewer", "viewer", account="acme")
    secret = hub.enqueue("test.secret", SECRET, account="acme")
    plain = hub.enqueue("test.ok", {"n": 1}, account="globex")
    hub.work()
    hub.as_operator("administrator").resolve(secret, "rotated the key")
    assert hub.archive(now=datetime.now(UTC) + timedelta(days=40)) == 2
    live = hub.enqueue("test.ok", {"n": 2, "password": "pw"}, account="acme", delay=3600)
    return {"secret": secret, "plain": plain, "live": live}


@pytest.mark.parametrize("role", ["administrator", "editor", "viewer", "acme-viewer"])
def test_history_and_archived_jobs_over_http_are_the_local_ones(
    hub: sgen_ops.Hub, api: Api, archived: dict[str, int], role: str
) -> None:
    local, remote = hub.as_operator(role), api.remote(role)
    pd.testing.assert_frame_equal(remote.history(), local.history(), check_exact=True)
    pd.testing.assert_frame_equal(remote.history(state="resolved", since=timedelta(hours=1)),
                                  local.history(state="resolved", since=timedelta(hours=1)), check_exact=True)
    visible = local.history()["id"].tolist()
    for job_id in archived.values():
        if job_id in visible:
            assert remote.get_job(job_id) == local.get_job(job_id)
        else:
            with pytest.raises(NotFound):
                remote.get_job(job_id)
    assert remote.get_job(archived["live"]).archived is False
    if role == "acme-viewer":
        assert visible == [archived["secret"], archived["live"]]
        with pytest.raises(AccessDenied, match="bound to account 'acme'"):
            remote.history(account="globex")
        with pytest.raises(AccessDenied, match="every account"):
            remote.archive_runs()
    else:
        pd.testing.assert_frame_equal(remote.archive_runs(), local.archive_runs(), check_exact=True)


def test_history_as_parquet_is_masked_for_a_viewer(hub: sgen_ops.Hub, api: Api, archived: dict[str, int]) -> None:
    http = api.http("viewer")
    for answer in (http.get("/api/accounts/acme/history", headers={"Accept": "application/vnd.apache.parquet"}),
                   http.get("/api/accounts/acme/history", params={"task": ["test.secret", "test.ok"]},
                            headers={"Accept": "application/vnd.apache.parquet, application/json;q=0.5"})):
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/vnd.apache.parquet"
        assert b"sk-live-51HxQ" not in answer.content and b"4242" not in answer.content
        table = pq.read_table(io.BytesIO(answer.content)).to_pandas()
        assert table["id"].tolist() == [archived["secret"], archived["live"]]
        assert table["archived"].tolist() == [True, False]
        assert json.loads(table["payload"][0])["credentials"]["api_key"] == "••••••"
    as_json = http.get("/api/accounts/*/history", params={"task": "test.ok"}).json()
    assert [row["id"] for row in as_json["items"]] == [archived["plain"], archived["live"]]
    assert http.get("/api/accounts/*/history", params={"state": "done"}).status_code == 422


def test_writes_to_an_archived_job_over_http(hub: sgen_ops.Hub, api: Api, archived: dict[str, int]) -> None:
    admin = api.remote("administrator")
    with pytest.raises(InvalidTransition, match="archived"):
        admin.rerun(archived["plain"])
    assert api.http("administrator").post(f"/api/jobs/{archived['plain']}/retry").status_code == 409
    admin.delete_job(archived["plain"])
    with pytest.raises(NotFound):
        admin.get_job(archived["plain"])
    assert archived["plain"] not in admin.history()["id"].tolist()
