#!/usr/bin/env node
// Lists every page of tools, prompts and resource templates through Custody
// with the official TypeScript MCP SDK over mTLS. Used by
// integration/test_lists.py. Prints one JSON line:
//   {"ok":true,"tools":[…],"pages":N,"prompts":[…],"templates":[…]}  or  {"ok":false,…}
//
// Usage: node test/mcp-list.mjs CONFIG.json  where CONFIG is {"url", "caBundle", "caller": {"cert","key"}}

import { readFileSync } from "node:fs";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

import { custodyFetch, custodyRefusal, History, Svid } from "@custody/client";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const caller = Svid.fromFiles(config.caller.cert, config.caller.key);
// No history: custodyFetch is used for its mTLS agent only.
const fetch = custodyFetch(caller, { history: new History(), audience: "spiffe://example.org/ns/tools/sa/mcp-server", caBundle: config.caBundle });
const client = new Client({ name: "custody-ts-lists", version: "0.1.0" });
let out;
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(config.url), { fetch }));
  const tools = [];
  let pages = 0;
  let cursor;
  do {
    const page = await client.listTools(cursor ? { cursor } : {});
    tools.push(...page.tools.map((t) => t.name));
    pages += 1;
    cursor = page.nextCursor;
  } while (cursor);
  const prompts = [];
  cursor = undefined;
  do {
    const page = await client.listPrompts(cursor ? { cursor } : {});
    prompts.push(...page.prompts.map((p) => p.name));
    cursor = page.nextCursor;
  } while (cursor);
  const templates = (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
  out = { ok: true, tools, pages, prompts, templates };
} catch (err) {
  const refusal = custodyRefusal(err);
  out = { ok: false, name: err?.name, message: String(err?.message ?? err), status: refusal?.status, data: refusal?.data ?? err?.data };
} finally {
  await client.close().catch(() => {});
  await fetch.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
