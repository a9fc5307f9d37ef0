#!/usr/bin/env node
// Calls one MCP tool through Custody with the official TypeScript MCP SDK and
// custodyFetch, after building a workflow history with @custody/client.
// Used by integration/test_client_typescript.py. Prints one JSON line:
//   {"ok":true,"text":"…","content":[…]}   or
//   {"ok":false,"stage":"connect"|"call","name":…,"message":…,"status":…,"code":…,"data":{…}}
//
// Usage: node test/mcp-call.mjs CONFIG.json   where CONFIG is
//   {"url", "audience", "caBundle", "caller": {"cert","key"},
//    "steps": [{"cert","key","step","next","claims"?}, …], "tamper"?: bool,
//    "tool", "arguments"}

import { readFileSync } from "node:fs";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

import { b64u, b64uDecode, canonicalJson, custodyFetch, custodyRefusal, History, Svid } from "@custody/client";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));

let history = new History();
for (const s of config.steps) {
  history = history.append(Svid.fromFiles(s.cert, s.key), { step: s.step, next: s.next, ...(s.claims ? { claims: s.claims } : {}) });
}
if (config.tamper) {
  // Entry 0's claims changed after signing, still canonical base64url: its signature no longer verifies.
  const [head, payload, sig] = history.entries[0].split(".");
  const forged = JSON.parse(Buffer.from(b64uDecode(payload)).toString("utf8"));
  forged.claims = { ...forged.claims, order: "o-2" };
  history = new History([`${head}.${b64u(canonicalJson(forged))}.${sig}`, ...history.entries.slice(1)], history.certs);
}

const caller = Svid.fromFiles(config.caller.cert, config.caller.key);
const fetch = custodyFetch(caller, { history, audience: config.audience, caBundle: config.caBundle });
const client = new Client({ name: "custody-ts-example", version: "0.1.0" });
let stage = "connect";
let out;
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(config.url), { fetch }));
  stage = "call";
  const result = await client.callTool({ name: config.tool, arguments: config.arguments });
  out = { ok: !result.isError, text: result.content?.[0]?.text, content: result.content };
} catch (err) {
  const refusal = custodyRefusal(err);
  out = { ok: false, stage, name: err?.name, message: String(err?.message ?? err), status: refusal?.status, code: refusal?.code ?? err?.code, data: refusal?.data ?? err?.data };
} finally {
  await client.close().catch(() => {});
  await fetch.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
