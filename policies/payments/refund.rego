# The amount and the holder of a refund, checked against the human approval.
#
# The rule's `require` clauses already ensure a verified `human_approval` by
# the approvals service at most 30 minutes old. This rule looks at the same
# kind of entry (same signer, result and age, so an old or forged approval
# cannot lend its amount to a fresh one) and allows only if one of them:
#   - was handed to the caller: its `next` is the calling agent, so a
#     history cannot be replayed by another agent that got hold of it;
#   - approved at least the requested amount: `claims.amount` (a number)
#     >= `mcp.arguments.amount` (a positive number).
package payments.refund

import rego.v1

approver := "spiffe://example.org/ns/payments/sa/approvals"

# Keep in step with the rule's `within: 30m`.
max_age := 1800

default allow := false

allow if {
	some approval in approvals
	approval.next == input.calling_agent
	amount <= approval.claims.amount
}

# The requested amount: a positive number.
amount := a if {
	a := input.mcp.arguments.amount
	is_number(a)
	a > 0
}

# Fresh approvals by the approvals service, for a numeric amount.
approvals contains entry if {
	some entry in input.history
	entry.step == "human_approval"
	entry.result == "approved"
	entry.agent == approver
	entry.age <= max_age
	is_number(entry.claims.amount)
}
