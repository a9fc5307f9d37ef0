"""Real parts for Custody's end-to-end tests and demo: a trust domain CA with
X.509-SVIDs, the example MCP tool server, and Envoy running the built filter."""
