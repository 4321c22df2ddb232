"""Payload masking and error-text scrubbing as an operator would see them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sgen_ops.core.masking import MASK, MaskingRule
from sgen_ops.errors import ValidationError

GLOBAL = ("password", "secret", "token", "api_key", "authorization")


def test_nested_key_is_masked_and_siblings_are_not() -> None:
    rule = MaskingRule(["credentials.api_key"])
    out = rule.mask_payload({"credentials": {"api_key": "sk-live-123", "user": "bob"}, "api_key": "top"})
    assert out == {"credentials": {"api_key": MASK, "user": "bob"}, "api_key": "top"}


def test_star_matches_every_list_item() -> None:
    rule = MaskingRule(["rows.*.card"])
    out = rule.mask_payload({"rows": [{"card": "4111", "id": 1}, {"card": "5500", "id": 2}, {"id": 3}]})
    assert out == {"rows": [{"card": MASK, "id": 1}, {"card": MASK, "id": 2}, {"id": 3}]}


def test_numeric_segment_masks_only_that_index() -> None:
    rule = MaskingRule(["items.0.secret_code"])
    out = rule.mask_payload({"items": [{"secret_code": "a1"}, {"secret_code": "b2"}]})
    assert out == {"items": [{"secret_code": MASK}, {"secret_code": "b2"}]}


def test_star_matches_every_dict_key() -> None:
    rule = MaskingRule(["headers.*"])
    out = rule.mask_payload({"headers": {"X-Trace": "t1", "Cookie": "c=1"}, "url": "/x"})
    assert out == {"headers": {"X-Trace": MASK, "Cookie": MASK}, "url": "/x"}


def test_whole_subtree_becomes_one_mask() -> None:
    rule = MaskingRule(["customer", "tags"])
    out = rule.mask_payload({"customer": {"email": "a@b.c", "cards": [1, 2]}, "tags": ["x", "y"], "n": 1})
    assert out == {"customer": MASK, "tags": MASK, "n": 1}


def test_global_keys_match_at_any_depth_case_insensitively() -> None:
    rule = MaskingRule(global_keys=GLOBAL)
    payload = {
        "db": {"DB_Password": "pw", "host": "h"},
        "list": [{"Authorization": "Bearer x"}],
        "AccessToken": 7,
    }
    assert rule.mask_payload(payload) == {
        "db": {"DB_Password": MASK, "host": "h"},
        "list": [{"Authorization": MASK}],
        "AccessToken": MASK,
    }


def test_input_is_not_mutated() -> None:
    payload: dict[str, Any] = {
        "credentials": {"api_key": "k" * 10},
        "rows": [{"card": "4111"}],
        "password": "p",
    }
    before = copy.deepcopy(payload)
    out = MaskingRule(["credentials.api_key", "rows.*.card"], GLOBAL).mask_payload(payload)
    assert payload == before
    assert out["rows"] is not payload["rows"] and out["rows"][0] is not payload["rows"][0]


def test_mask_hides_length_and_type() -> None:
    rule = MaskingRule(["a", "b", "c"])
    out = rule.mask_payload({"a": "x", "b": "a-much-longer-secret-value", "c": 123456})
    assert out["a"] == out["b"] == out["c"] == MASK


@pytest.mark.parametrize("payload", [None, "text", 42, 1.5, True])
def test_non_container_payload_comes_back_unchanged(payload: Any) -> None:
    assert MaskingRule(["a"], GLOBAL).mask_payload(payload) == payload


def test_sensitive_values_flatten_subtrees_and_skip_short_values() -> None:
    rule = MaskingRule(["customer", "pin", "code"], GLOBAL)
    payload = {"customer": {"email": "a@b.c", "ids": [12, 98765]}, "pin": 7, "code": "", "password": "x"}
    assert sorted(rule.sensitive_values(payload)) == sorted(["a@b.c", "98765"])
    # A one-letter secret is masked in the payload but not scrubbed from text like "Traceback".
    assert rule.mask_payload(payload)["password"] == MASK
    assert rule.mask_text("Traceback: x", payload) == "Traceback: x"


def test_mask_text_scrubs_payload_values_longest_first() -> None:
    rule = MaskingRule(["token_a", "token_b"])
    text = "failed calling https://api/?k=abc123def with prefix abc123"
    out = rule.mask_text(text, {"token_a": "abc123", "token_b": "abc123def"})
    assert out == f"failed calling https://api/?k={MASK} with prefix {MASK}"


def test_mask_text_scrubs_global_key_fragments() -> None:
    rule = MaskingRule(global_keys=GLOBAL)
    text = (
        "connect(password=hunter2, host=db) failed\n"
        "Authorization: Bearer eyJabc.def\n"
        '{"api_key": "sk-1", "user": "bob"}\n'
        "{'client_secret': 'shh'} token: t0k3n"
    )
    out = rule.mask_text(text)
    for secret in ("hunter2", "eyJabc.def", "sk-1", "shh", "t0k3n"):
        assert secret not in out
    assert f"password={MASK}, host=db" in out
    assert f"Authorization: Bearer {MASK}" in out
    assert f'"api_key": "{MASK}", "user": "bob"' in out
    assert f"'client_secret': '{MASK}'" in out


@pytest.mark.timeout(60)
def test_mask_text_on_a_huge_error_stays_linear_and_right() -> None:
    """A handler's error of megabytes (a run of word characters, keys glued together, keys without
    values) is scrubbed in one pass: a key pattern that backtracks through long words never returns."""
    rule = MaskingRule(global_keys=GLOBAL)
    run = "x" * 1_000_000
    assert rule.mask_text(run + " password=hunter2") == run + f" password={MASK}"
    glued = "passwordtoken" * 80_000
    assert rule.mask_text(glued + "=s3cr3t") == glued + f"={MASK}"
    spaced = "secret " * 150_000
    assert rule.mask_text(spaced) == spaced
    expected = f"db_password_hash: {MASK}\nmy-api_key.v2={MASK}"
    assert rule.mask_text("db_password_hash: abc\nmy-api_key.v2=k9") == expected


def test_mask_text_keeps_none_and_innocent_text() -> None:
    rule = MaskingRule(["a"], GLOBAL)
    assert rule.mask_text(None, {"a": "secret"}) is None
    assert rule.mask_text("division by zero at line 12", {"a": "zzz"}) == "division by zero at line 12"


def test_is_sensitive_path() -> None:
    rule = MaskingRule(["rows.*.card", "items.0"], ["token"])
    assert rule.is_sensitive_path(("rows", 3, "card"))
    assert rule.is_sensitive_path(("items", 0, "deep"))
    assert rule.is_sensitive_path(("x", "MyToken"))
    assert not rule.is_sensitive_path(("items", 1))
    assert not rule.is_sensitive_path(("rows", 3, "id"))


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", "a.*x"])
def test_invalid_path_rejected_with_explanation(path: str) -> None:
    with pytest.raises(ValidationError, match=r"sensitive path .*(empty|whole segment)"):
        MaskingRule([path])


def test_empty_global_key_rejected() -> None:
    with pytest.raises(ValidationError, match="empty"):
        MaskingRule(global_keys=[""])


def test_a_literal_dotted_key_is_masked_by_its_path() -> None:
    rule = MaskingRule(["customer.email", "a.b.c"])
    masked = rule.mask_payload({"customer.email": "x@y.z", "customer": {"email": "p@q.r"}, "a.b": {"c": 1},
                                "a": {"b.c": 2}, "customer.emails": "kept"})
    assert masked == {"customer.email": MASK, "customer": {"email": MASK}, "a.b": {"c": MASK},
                      "a": {"b.c": MASK}, "customer.emails": "kept"}
    assert rule.sensitive_values({"customer.email": "x@y.z"}) == ["x@y.z"]
    assert rule.is_sensitive_path(("customer.email",))


def test_everything_rule_masks_the_whole_payload_and_scrubs_every_value() -> None:
    rule = MaskingRule(everything=True)
    assert rule.mask_payload({"a": 1, "b": ["xyz"]}) == MASK and rule.mask_payload(None) is None
    assert rule.mask_text("got xyz and 123", {"a": 123, "b": ["xyz"]}) == f"got {MASK} and {MASK}"


def test_restore_keeps_stored_secrets_under_the_mask() -> None:
    rule = MaskingRule(["credentials", "rows.*.card"])
    stored = {"credentials": {"key": "k1", "user": "u"}, "rows": [{"card": "c1"}, {"card": "c2"}], "n": 1}
    submitted = {"credentials": MASK, "rows": [{"card": MASK}, {"card": "c9"}, {"card": "c3"}], "n": 2}
    assert rule.restore(submitted, stored, has_stored=True) == {
        "credentials": {"key": "k1", "user": "u"}, "rows": [{"card": "c1"}, {"card": "c9"}, {"card": "c3"}], "n": 2}


@pytest.mark.parametrize(
    "submitted",
    [{"n": MASK}, {"rows": [{"card": "c1"}, {"card": "c2"}, {"card": MASK}]}, {"credentials": f"x{MASK}"}],
)
def test_restore_refuses_a_mask_with_no_stored_value_behind_it(submitted: Any) -> None:
    rule = MaskingRule(["credentials", "rows.*.card"])
    with pytest.raises(ValidationError, match="mask"):
        rule.restore(submitted, {"credentials": "k", "rows": [{"card": "c1"}, {"card": "c2"}], "n": 1},
                     has_stored=True)
    with pytest.raises(ValidationError, match="mask"):
        rule.restore({"credentials": MASK})  # a new payload has nothing stored


def test_search_text_keeps_unicode_and_leaves_masks_out() -> None:
    rule = MaskingRule(["token"])
    text = rule.search_text({"token": "tok-1", "city": "Zürich"}, "failed for tok-1 in Zürich")
    assert "Zürich" in text and "tok-1" not in text and MASK not in text and "2022" not in text
