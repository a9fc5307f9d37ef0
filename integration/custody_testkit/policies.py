"""Policies more than one end-to-end test runs under."""

# A refund needs a human approval signed by the approvals workload; the
# workloads live under NS of example.org.
NS = "/ns/payments/sa/"
REFUNDS_NEED_APPROVAL = """
rules:
- name: lifecycle
  callers: ["spiffe://example.org/**"]
  methods: [server/discover, initialize, ping, "notifications/*", tools/list, jsonrpc:response, "http:GET", "http:DELETE"]
- name: refunds
  callers: ["spiffe://example.org/ns/payments/sa/refund-agent"]
  methods: [tools/call]
  tools: [refund]
  require:
  - step: human_approval
    by: ["spiffe://example.org/ns/payments/sa/approvals"]
"""
