"""The boundary checks: what each refuses, what it says, and that describing a value never fails."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sgen_ops.core.validate import (
    INT_MAX,
    account,
    clean_text,
    describe,
    ident,
    json_document,
    moment,
    names,
    storable,
    text,
    whole,
)
from sgen_ops.errors import NotFound, ValidationError


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value", [10**5000, nested(5000), "x" * 10**6, object(), b"\x00", {1: {2: {3: {4: 5}}}}],
    ids=["huge-int", "deep", "long", "object", "bytes", "dict"],
)
def test_describe_never_fails_and_stays_short(value: Any) -> None:
    assert len(describe(value)) < 200


@pytest.mark.parametrize(("value", "words"), [("a\x00b", "NUL character"), ("x\ud800", "lone surrogate")])
def test_text_a_backend_cannot_store_is_refused(value: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        storable(value, "note")


def test_text_checks_type_blankness_and_width() -> None:
    assert text(" ok ", "task", max_chars=10, allowed="a name") == " ok "
    for bad, words in [(["a"], "a list"), ("  ", "it is empty"), ("x" * 11, "over the limit of 10")]:
        with pytest.raises(ValidationError, match=words):
            text(bad, "task", max_chars=10, allowed="a name")


@pytest.mark.parametrize("value", ["", 123, ["acme"], "a" * 101, "ac\x00me"])
def test_account_must_be_storable_text(value: Any) -> None:
    with pytest.raises(ValidationError, match="account"):
        account(value)


def test_names_take_one_or_many() -> None:
    assert names("a", "task") == ("a",)
    assert names(["a", "b", "a"], "task") == ("a", "b")
    for bad in ([], 5, ["a", 5], {"a": 1}):
        with pytest.raises(ValidationError, match="task="):
            names(bad, "task")


@pytest.mark.parametrize("value", [True, 1.0, "3", None, 0, INT_MAX + 1, -(2**80)])
def test_whole_numbers_in_range(value: Any) -> None:
    with pytest.raises(ValidationError, match="max_attempts"):
        whole(value, "max_attempts", lo=1, hi=INT_MAX)


def test_ids_that_cannot_exist_are_not_found() -> None:
    assert ident(42, "job") == 42
    for impossible in (0, -1, INT_MAX + 1, 2**64):
        with pytest.raises(NotFound):
            ident(impossible, "job")
    for wrong in ("42", 4.2, True, None):
        with pytest.raises(ValidationError):
            ident(wrong, "job")


def test_moments() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert moment("2026-01-01T00:00:00Z", "since", now) == now
    assert moment(timedelta(hours=1), "since", now) == now - timedelta(hours=1)
    for bad in (timedelta.max, "yesterday", "2026-01-01\x00", 5, datetime(9999, 12, 31)):
        with pytest.raises(ValidationError, match="since"):
            moment(bad, "since", now)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (nested(65), "nested more than 64"),
        (nested(5000), "nested more than 64"),
        ({"a": math.nan}, "not JSON-serialisable"),
        ({"a": 2**64}, "past 64 bits"),
        ({1: "a"}, "keys are text"),
        ({"a": {1, 2}}, "not JSON-serialisable"),
        ({"a": "x\x00"}, "NUL"),
        ({"k\ud800": 1}, "lone surrogate"),
        ("y" * 2000, "the limit is 1000 bytes"),
    ],
)
def test_json_documents(value: Any, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        json_document(value, "payload", max_depth=64, max_bytes=1000)


def test_json_documents_that_only_look_suspicious_pass() -> None:
    """A string spelling an escape, or a real astral character (a surrogate pair when escaped), is fine."""
    assert json_document({"a": "\\u0000", "b": "\\ud800", "c": "😀"}, "payload", max_depth=4, max_bytes=100)
    assert json_document(nested(64), "payload", max_depth=64, max_bytes=1000)


def test_clean_text_makes_task_text_storable() -> None:
    assert clean_text("a\x00b\ud800c") == "a\ufffdb?c"
