# SQL for the database tool server (policy.yaml).
#
# select_only: `run_sql` whose `sql` is one plain SELECT. The check is
# deliberately strict and errs on the side of refusing (a refused read can
# go through a DBA approval; an accepted write cannot be undone), and it is
# defence in depth: the server's database role should be read-only too.
#   - a string of at most 4096 characters;
#   - one optional trailing ;, no other ; at all (one statement);
#   - otherwise only ASCII letters, digits, whitespace and
#     , . * ( ) = < > ! ' " + - / % _ (no backslash, no backtick, no $
#     quoting, no # comments, no :: casts, nothing outside ASCII);
#   - no comments: no --, /* or */;
#   - the first word is SELECT (so no WITH: a CTE may modify data);
#   - no word that writes, locks, changes settings or reaches outside the
#     query, wherever it appears, even inside a string literal.
#
# approved_statement: a `dba_approval` by the DBA approver, fresh, handed to
# the caller (`next`), whose claims name this tool and this exact statement:
# `claims.tool` equals `mcp.tool`, and `claims.statement` equals
# `mcp.arguments.sql` for run_sql, or the whole `mcp.arguments` object for
# other tools (delete_*, drop_*).
package database.sql

import rego.v1

approver := "spiffe://example.org/ns/dba/sa/approver"

# Keep in step with the rule's `within: 15m`.
max_age := 900

max_sql_chars := 4096

default select_only := false

select_only if {
	input.mcp.tool == "run_sql"
	is_select(input.mcp.arguments.sql)
}

default approved_statement := false

approved_statement if {
	some approval in approvals
	approval.next == input.calling_agent
	approval.claims.tool == input.mcp.tool
	approval.claims.statement == statement
}

# What an approval must name: the SQL text, or the tool's arguments.
statement := sql if {
	input.mcp.tool == "run_sql"
	sql := input.mcp.arguments.sql
	is_string(sql)
}

statement := args if {
	input.mcp.tool != "run_sql"
	args := input.mcp.arguments
	is_object(args)
}

approvals contains entry if {
	some entry in input.history
	entry.step == "dba_approval"
	entry.result == "approved"
	entry.agent == approver
	entry.age <= max_age
}

is_select(sql) if {
	is_string(sql)
	count(sql) <= max_sql_chars
	body := trim_suffix(trim_space(sql), ";")
	strings.replace_n(delete_allowed, body) == ""
	not contains(body, "--")
	not contains(body, "/*")
	not contains(body, "*/")
	ws := words(lower(body))
	ws[0] == "select"
	count({w | some w in ws} & forbidden_words) == 0
	not has_forbidden_prefix(ws)
}

has_forbidden_prefix(ws) if {
	joined := concat(" ", ["", concat(" ", ws)])
	some prefix in forbidden_prefixes
	contains(joined, concat("", [" ", prefix]))
}

# The words of s (lowercase, allowed characters only): runs of
# [a-z0-9_], everything else separates.
words(s) := [w | some w in split(strings.replace_n(separators_to_space, s), " "); w != ""]

# Literal maps, not comprehensions: this runs on every call, and a builtin
# over the whole string is far cheaper than a rule per character.
# ASCII letters, digits, _ and the separators deleted: what is left is not allowed.
delete_allowed := {
	"a": "", "b": "", "c": "", "d": "", "e": "", "f": "", "g": "", "h": "", "i": "",
	"j": "", "k": "", "l": "", "m": "", "n": "", "o": "", "p": "", "q": "", "r": "",
	"s": "", "t": "", "u": "", "v": "", "w": "", "x": "", "y": "", "z": "", "A": "",
	"B": "", "C": "", "D": "", "E": "", "F": "", "G": "", "H": "", "I": "", "J": "",
	"K": "", "L": "", "M": "", "N": "", "O": "", "P": "", "Q": "", "R": "", "S": "",
	"T": "", "U": "", "V": "", "W": "", "X": "", "Y": "", "Z": "", "0": "", "1": "",
	"2": "", "3": "", "4": "", "5": "", "6": "", "7": "", "8": "", "9": "", "_": "",
	" ": "", "\t": "", "\n": "", "\r": "", ",": "", ".": "", "*": "", "(": "", ")": "",
	"=": "", "<": "", ">": "", "!": "", "'": "", "\"": "", "+": "", "-": "", "/": "",
	"%": ""
}

separators_to_space := {
	" ": " ", "\t": " ", "\n": " ", "\r": " ", ",": " ", ".": " ", "*": " ", "(": " ",
	")": " ", "=": " ", "<": " ", ">": " ", "!": " ", "'": " ", "\"": " ", "+": " ",
	"-": " ", "/": " ", "%": " "
}

forbidden_words := {
	# writes and schema changes
	"insert", "update", "delete", "merge", "upsert", "replace", "truncate",
	"drop", "alter", "create", "rename", "comment", "grant", "revoke",
	# SELECT ... INTO a new table or a file; FOR UPDATE/SHARE row locks
	"into", "outfile", "dumpfile", "for", "lock",
	# other statements and procedures
	"with", "call", "exec", "execute", "do", "copy", "load", "import",
	"attach", "detach", "pragma", "vacuum", "analyze", "reindex", "cluster",
	"refresh", "set", "reset", "begin", "commit", "rollback", "savepoint",
	"release", "prepare", "deallocate", "declare", "fetch", "move", "close",
	"discard", "listen", "notify", "unlisten", "handler", "shutdown", "kill",
	# functions with side effects, or that build and run SQL from strings
	"nextval", "setval", "set_config", "sleep", "benchmark", "load_file",
	"chr", "char", "query_to_xml", "cursor_to_xml",
}

forbidden_prefixes := {"pg_", "lo_", "dblink", "xp_", "sp_", "sys_", "utl_", "dbms_"}
