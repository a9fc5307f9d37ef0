"""Call claims (`binds: call`): the shared RFC 8785 known-answer vectors of
json/testdata/jcs-vectors.json byte for byte, and the claim of a call as the
filter computes it."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from custody_client import CallError, History, HistoryError, args_sha256, call_claim
from custody_client.call import canonical
from test_vectors import svid as fixture_svid

VECTORS = json.loads((REPO / "json" / "testdata" / "jcs-vectors.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("v", VECTORS["vectors"], ids=lambda v: v["name"])
def test_jcs_vectors_byte_for_byte(v):
    value = json.loads(v["input"])
    if v["canonical"] is not None:
        assert canonical(value) == v["canonical"].encode("utf-8")
    if v["args_sha256"] is None:
        with pytest.raises(CallError):
            args_sha256(value)
    else:
        assert args_sha256(value) == v["args_sha256"]


def test_absent_arguments_are_the_empty_object():
    assert args_sha256(None) == args_sha256({}) == VECTORS["absent_arguments_sha256"]


REFUND_O1 = "pKfMX11tpCs7e2dLXkAmu9klG_G7gIHQf5VmjcEzz_U"


def test_a_request_and_its_short_form_give_the_same_claim():
    args = {"order_id": "o-1", "amount": 12000, "currency": "USD"}
    request = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "refund", "arguments": args}}
    assert call_claim(request) == {"tool": "refund", "args_sha256": REFUND_O1}
    assert call_claim({"name": "refund", "arguments": dict(reversed(list(args.items())))}) == call_claim(request)
    assert call_claim({"name": "refund", "arguments": {**args, "order_id": "o-2"}})["args_sha256"] != REFUND_O1
    assert call_claim({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "file:///r"}}) == {
        "resource": "file:///r",
        "args_sha256": VECTORS["absent_arguments_sha256"],
    }
    assert call_claim({"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": "p"}})["prompt"] == "p"


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": "file:///r"}},
        {"name": ""},
        {"name": "a", "args": {}},
        {"name": "a", "arguments": [1]},
        {"name": "a", "arguments": {"n": 2**53}},
        {"name": "a", "arguments": {"n": 1e21}},
        {"name": "a", "arguments": {"n": float("nan")}},
        [1],
    ],
)
def test_what_cannot_be_bound_is_refused(message):
    with pytest.raises(CallError):
        call_claim(message)


def test_append_binds_an_entry_to_one_call(fixtures):
    svid = fixture_svid(fixtures, "approvals")
    call = {"name": "refund", "arguments": {"order_id": "o-1", "amount": 12000, "currency": "USD"}}
    h = History().append(svid, step="human_approval", next="spiffe://example.org/ns/payments/sa/refund-agent",
                         claims={"amount": 12000}, bind_call=call, iat=1_776_521_950)
    assert h.last.claims == {"amount": 12000, "call": {"tool": "refund", "args_sha256": REFUND_O1}}
    with pytest.raises(HistoryError):
        History().append(svid, step="s", next="spiffe://example.org/x", claims={"call": 1}, bind_call=call)
    with pytest.raises(HistoryError):
        History().append(svid, step="s", next="spiffe://example.org/x", bind_call={"name": "a", "arguments": {"n": 2**60}})
