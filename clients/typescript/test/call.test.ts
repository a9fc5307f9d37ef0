/**
 * Call claims (`binds: call`): the shared RFC 8785 known-answer vectors of
 * json/testdata/jcs-vectors.json byte for byte, and the claim of a call as
 * the filter computes it.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

import { argsSha256, CallError, callClaim, canonical, History, HistoryError } from "@custody/client";
import { fixtureSvid, REPO, SA } from "./helpers.js";

interface JcsVector {
  name: string;
  input: string;
  canonical: string | null;
  args_sha256: string | null;
}
const FILE = JSON.parse(readFileSync(join(REPO, "json", "testdata", "jcs-vectors.json"), "utf8")) as {
  absent_arguments_sha256: string;
  vectors: JcsVector[];
};
const REFUND_O1 = "pKfMX11tpCs7e2dLXkAmu9klG_G7gIHQf5VmjcEzz_U";

describe("JCS vectors (json/testdata/jcs-vectors.json)", () => {
  assert.ok(FILE.vectors.length >= 10);
  for (const v of FILE.vectors) {
    it(v.name, () => {
      const value = JSON.parse(v.input) as Record<string, unknown>;
      if (v.canonical !== null) assert.equal(canonical(value), v.canonical);
      if (v.args_sha256 === null) assert.throws(() => argsSha256(value), CallError);
      else assert.equal(argsSha256(value), v.args_sha256);
    });
  }
  it("absent arguments are the empty object", () => {
    assert.equal(argsSha256(undefined), FILE.absent_arguments_sha256);
    assert.equal(argsSha256({}), FILE.absent_arguments_sha256);
  });
});

describe("callClaim", () => {
  const args = { order_id: "o-1", amount: 12000, currency: "USD" };
  it("gives the filter's claim for a request and for {name, arguments}", () => {
    const request = { jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "refund", arguments: args } };
    assert.deepEqual(callClaim(request), { tool: "refund", args_sha256: REFUND_O1 });
    assert.deepEqual(callClaim({ name: "refund", arguments: { currency: "USD", amount: 12000, order_id: "o-1" } }), callClaim(request));
    assert.notEqual(callClaim({ name: "refund", arguments: { ...args, order_id: "o-2" } }).args_sha256, REFUND_O1);
    assert.deepEqual(callClaim({ jsonrpc: "2.0", id: 1, method: "resources/read", params: { uri: "file:///r" } }), {
      resource: "file:///r",
      args_sha256: FILE.absent_arguments_sha256,
    });
    assert.equal(callClaim({ jsonrpc: "2.0", id: 1, method: "prompts/get", params: { name: "p" } }).prompt, "p");
  });
  it("refuses what cannot be bound", () => {
    for (const bad of [
      { jsonrpc: "2.0", id: 1, method: "tools/list" },
      { jsonrpc: "2.0", id: 1, method: "resources/subscribe", params: { uri: "file:///r" } },
      { name: "" },
      { name: "a", args: {} },
      { name: "a", arguments: [1] },
      { name: "a", arguments: { n: 2 ** 53 } },
      { name: "a", arguments: { n: 1e21 } },
      { name: "a", arguments: { n: Number.NaN } },
    ]) {
      assert.throws(() => callClaim(bad as Record<string, unknown>), CallError, JSON.stringify(bad));
    }
  });
  it("History.append({bindCall}) adds claims.call beside the other claims", () => {
    const svid = fixtureSvid("approvals");
    const h = new History().append(svid, {
      step: "human_approval",
      next: SA + "refund-agent",
      claims: { amount: 12000 },
      bindCall: { name: "refund", arguments: args },
    });
    assert.deepEqual(h.last?.claims, { amount: 12000, call: { tool: "refund", args_sha256: REFUND_O1 } });
    assert.throws(() => new History().append(svid, { step: "s", next: SA + "x", claims: { call: 1 }, bindCall: { name: "a" } }), HistoryError);
    assert.throws(() => new History().append(svid, { step: "s", next: SA + "x", bindCall: { name: "a", arguments: { n: 2 ** 60 } } }), HistoryError);
  });
});
