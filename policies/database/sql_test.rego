package database.sql_test

import rego.v1

import data.database.sql

agent := "spiffe://example.org/ns/analytics/sa/reporter"

run_sql(s) := {
	"calling_agent": agent, "now": 1776522000,
	"mcp": {"method": "tools/call", "id": 1, "tool": "run_sql", "arguments": {"sql": s}},
	"history": [],
}

selects := [
	"SELECT * FROM orders",
	"select id, total from orders where total > 100 order by id limit 10",
	"SELECT count(*) FROM events;",
	"  SELECT a.id\n  FROM a JOIN b ON a.id = b.a_id\n  WHERE b.name = 'x' ",
	"SELECT 1 UNION SELECT 2",
	"SELECT total / 2, -1 FROM orders WHERE name LIKE 'a%'",
	"SELECT \"Quoted\" FROM \"Table\"",
]

refused := [
	"",
	"   ",
	"DELETE FROM orders",
	"SELECT 1; DELETE FROM orders",
	"SELECT 1;DELETE FROM orders;",
	"SELECT 1;;",
	"SELECT 1; -- DELETE",
	"SELECT * FROM t -- trailing comment",
	"SELECT /* x */ 1",
	"/* x */ SELECT 1",
	"SELECT 1 # comment",
	"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
	"SELECT * INTO backup FROM orders",
	"SELECT * FROM orders FOR UPDATE",
	"SELECT pg_sleep(10)",
	"SELECT pg_read_file('/etc/passwd')",
	"SELECT nextval('seq')",
	"SELECT set_config('role', 'admin', false)",
	"SELECT * FROM dblink('host=x', 'DROP TABLE t') AS t(a int)",
	"SELECT query_to_xml(chr(68) || 'ROP TABLE t', true, true, '')",
	"SELECT 'a' || $$x$$",
	"SELECT `id` FROM t",
	"SELECT 'it\\'s'",
	"SELECT id::text FROM t",
	"SELECTx FROM t",
	"EXPLAIN ANALYZE DELETE FROM t",
	"SELECT\u00a01",
	"ＳＥＬＥＣＴ 1",
	"UPDATE orders SET total = 0",
	"select * from orders where status = 'delete'",
]

test_plain_selects_are_allowed if {
	every s in selects {
		sql.select_only with input as run_sql(s)
	}
}

test_everything_else_is_refused if {
	every s in refused {
		not sql.select_only with input as run_sql(s)
	}
}

test_sql_must_be_a_short_string if {
	not sql.select_only with input as run_sql(42)
	not sql.select_only with input as run_sql(["SELECT 1"])
	long := concat("", ["SELECT 1", concat("", [" " | some _ in numbers.range(1, 4100)])])
	not sql.select_only with input as run_sql(long)
}

test_only_run_sql if {
	doc := object.union(run_sql("SELECT 1"), {"mcp": {"tool": "query_readonly"}})
	not sql.select_only with input as doc
}

approval(claims, age) := {
	"seq": 0, "step": "dba_approval", "result": "approved",
	"agent": "spiffe://example.org/ns/dba/sa/approver", "next": agent,
	"iat": 1776522000 - age, "age": age, "claims": claims,
}

call(tool, args, history) := {
	"calling_agent": agent, "now": 1776522000,
	"mcp": {"method": "tools/call", "id": 1, "tool": tool, "arguments": args},
	"history": history,
}

test_approval_binds_the_exact_statement if {
	stmt := "DELETE FROM events WHERE day < '2026-01-01'"
	a := approval({"tool": "run_sql", "statement": stmt}, 60)
	sql.approved_statement with input as call("run_sql", {"sql": stmt}, [a])
	not sql.approved_statement with input as call("run_sql", {"sql": "DELETE FROM events"}, [a])
	not sql.approved_statement with input as call("run_sql", {"sql": concat("", [stmt, " "])}, [a])
}

test_approval_binds_the_tool_and_arguments if {
	args := {"table": "events"}
	a := approval({"tool": "drop_table", "statement": args}, 60)
	sql.approved_statement with input as call("drop_table", args, [a])
	not sql.approved_statement with input as call("drop_table", {"table": "users"}, [a])
	not sql.approved_statement with input as call("drop_table", {"table": "events", "cascade": true}, [a])
	not sql.approved_statement with input as call("delete_rows", args, [a])
}

test_approval_must_be_fresh_from_the_approver_to_the_caller if {
	args := {"table": "events"}
	claims := {"tool": "drop_table", "statement": args}
	not sql.approved_statement with input as call("drop_table", args, [approval(claims, 901)])
	forged := object.union(approval(claims, 60), {"agent": "spiffe://example.org/ns/dba/sa/intern"})
	not sql.approved_statement with input as call("drop_table", args, [forged])
	elsewhere := object.union(approval(claims, 60), {"next": "spiffe://example.org/ns/analytics/sa/other"})
	not sql.approved_statement with input as call("drop_table", args, [elsewhere])
	rejected := object.union(approval(claims, 60), {"result": "rejected"})
	not sql.approved_statement with input as call("drop_table", args, [rejected])
}
