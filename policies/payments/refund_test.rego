package payments.refund_test

import rego.v1

import data.payments.refund

agent := "spiffe://example.org/ns/payments/sa/refund-agent"

approval(amount, next, age) := {
	"seq": 1, "step": "human_approval", "result": "approved",
	"agent": "spiffe://example.org/ns/payments/sa/approvals",
	"next": next, "iat": 1776522000 - age, "age": age,
	"claims": {"amount": amount},
}

request(amount, history) := {
	"calling_agent": agent,
	"now": 1776522000,
	"mcp": {"method": "tools/call", "id": 1, "tool": "refund", "arguments": {"amount": amount}},
	"history": history,
}

test_allows_up_to_the_approved_amount if {
	refund.allow with input as request(12000, [approval(15000, agent, 60)])
	refund.allow with input as request(15000, [approval(15000, agent, 60)])
}

test_denies_more_than_approved if {
	not refund.allow with input as request(15001, [approval(15000, agent, 60)])
}

test_denies_without_an_approval if {
	not refund.allow with input as request(1, [])
}

test_denies_an_approval_handed_to_another_agent if {
	other := "spiffe://example.org/ns/payments/sa/other-agent"
	not refund.allow with input as request(10, [approval(15000, other, 60)])
}

test_an_old_approval_does_not_lend_its_amount if {
	history := [approval(100000, agent, 3600), approval(100, agent, 60)]
	not refund.allow with input as request(5000, history)
	refund.allow with input as request(100, history)
}

test_an_approval_by_someone_else_does_not_count if {
	forged := object.union(approval(100000, agent, 60), {"agent": "spiffe://example.org/ns/payments/sa/fraud-agent"})
	not refund.allow with input as request(5000, [forged])
}

test_amounts_must_be_positive_numbers if {
	not refund.allow with input as request("12000", [approval(15000, agent, 60)])
	not refund.allow with input as request(0, [approval(15000, agent, 60)])
	not refund.allow with input as request(-5, [approval(15000, agent, 60)])
	not refund.allow with input as request(10, [approval("15000", agent, 60)])
}

test_a_rejected_approval_does_not_count if {
	rejected := object.union(approval(15000, agent, 60), {"result": "rejected"})
	not refund.allow with input as request(10, [rejected])
}
