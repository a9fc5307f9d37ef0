/**
 * Interoperability with the reference implementation, `dist/custody`:
 * histories built here verify there, and histories built there parse and
 * verify here (and can be extended here).
 */

import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";

import { checkProof, History, prove, sha256B64u, verifySignature } from "@custody/client";
import { custody, devTrustDomain, NO_CUSTODY, ok, SA, tmp, type Workload } from "./helpers.js";

const AUD = SA + "refund-tool";
const BODY = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":12000}}}\n';

function verify(headers: Record<string, string>, bundle: string, body: string = BODY, peer = SA + "refund-agent") {
  const d = tmp();
  const { "workflow-history-proof": _, ...hist } = headers;
  writeFileSync(join(d, "history.json"), JSON.stringify(hist));
  writeFileSync(join(d, "headers.txt"), Object.entries(headers).map(([k, v]) => `${k}: ${v}\n`).join(""));
  writeFileSync(join(d, "body"), body);
  return custody("history", "verify", "--in", join(d, "history.json"), "--bundle", bundle, "--proof-headers", join(d, "headers.txt"),
    "--body", join(d, "body"), "--peer", peer, "--aud", AUD);
}

describe("interop with dist/custody", { skip: NO_CUSTODY }, () => {
  let td: { bundle: string; w: Record<string, Workload> };
  let f: Workload, a: Workload, r: Workload;
  before(() => {
    td = devTrustDomain(["fraud-agent", "approvals", "refund-agent"]);
    [f, a, r] = [td.w["fraud-agent"]!, td.w["approvals"]!, td.w["refund-agent"]!];
  });

  const tsHistory = () =>
    new History()
      .append(f.svid, { step: "fraud_check_passed", next: a.spiffeId, claims: { amount: 12000, currency: "USD", note: 'é "q" \n\u0001 ☃ 😀', z: [1, { b: null, a: -0.5 }] } })
      .append(a.svid, { step: "human_approval", next: r.spiffeId, ttl: 1800 });

  it("Svid.fromFiles reads `custody ca issue` output", () => {
    assert.equal(r.svid.spiffeId, r.spiffeId);
    assert.equal(r.svid.x5t.length, 43);
  });

  it("a history built here verifies with `custody history verify`", () => {
    const headers = prove(tsHistory(), r.svid, { audience: AUD, body: BODY });
    const res = verify(headers, td.bundle);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /2 entries/);
  });

  it("a tampered history built here is refused by custody; so is another body", () => {
    const h = tsHistory();
    const [head, payload, sig] = h.entries[1]!.split(".") as [string, string, string];
    const flipped = sig.slice(0, 10) + (sig[10] !== "A" ? "A" : "B") + sig.slice(11);
    const forged = new History([h.entries[0]!, `${head}.${payload}.${flipped}`], h.certs);
    let res = verify(prove(forged, r.svid, { audience: AUD, body: BODY }), td.bundle);
    assert.equal(res.status, 1);
    assert.ok(res.stderr.startsWith("custody: refused: signature_invalid"), res.stderr);
    res = verify(prove(h, r.svid, { audience: AUD, body: BODY }), td.bundle, BODY.trimEnd());
    assert.equal(res.status, 1);
    assert.match(res.stderr, /proof_body/);
    res = verify(prove(h, r.svid, { audience: AUD, body: BODY }), td.bundle, BODY, SA + "fraud-agent");
    assert.match(res.stderr, /proof_signer/);
  });

  it("a history built by `custody history append/prove` parses and verifies here", () => {
    const d = tmp();
    const path = join(d, "h.json");
    ok("history", "append", "--cert", f.cert, "--key", f.key, "--step", "fraud_check_passed", "--result", "approved",
      "--next", a.spiffeId, "--claims", '{"b":1,"a":[1,2,{"z":null}]}', "--out", path);
    ok("history", "append", "--in", path, "--cert", a.cert, "--key", a.key, "--step", "human_approval",
      "--result", "approved", "--next", r.spiffeId, "--out", path);
    writeFileSync(join(d, "body"), BODY);
    const headers = JSON.parse(ok("history", "prove", "--in", path, "--cert", r.cert, "--key", r.key, "--aud", AUD,
      "--body", join(d, "body"), "--format", "json"));
    const h = History.parse(headers);
    assert.deepEqual([...h].map((e) => e.step), ["fraud_check_passed", "human_approval"]);
    assert.equal(h.holder, r.spiffeId);
    assert.deepEqual(h.at(0)!.claims, { a: [1, 2, { z: null }], b: 1 });
    for (const e of h) {
      const cert = h.certs.find((c) => sha256B64u(c) === e.x5t)!;
      assert.ok(verifySignature(e.compact, cert));
    }
    checkProof(headers);
    assert.deepEqual(History.parse(JSON.parse(readFileSync(path, "utf8"))).entries, h.entries);
    // The `name: value` format of `prove` is also a list of header pairs.
    const lines = ok("history", "prove", "--in", path, "--cert", r.cert, "--key", r.key, "--aud", AUD, "--body", join(d, "body"));
    const pairs = lines.trim().split("\n").map((l) => l.split(": ") as [string, string]);
    checkProof(pairs);
  });

  it("mixed chain: custody starts, TS extends, custody extends, TS proves", () => {
    const d = tmp();
    const path = join(d, "h.json");
    ok("history", "append", "--cert", f.cert, "--key", f.key, "--step", "fraud_check_passed", "--result", "approved",
      "--next", a.spiffeId, "--out", path);
    let h = History.parse(JSON.parse(readFileSync(path, "utf8")));
    h = h.append(a.svid, { step: "human_approval", next: r.spiffeId, claims: { amount: 5 } });
    writeFileSync(path, JSON.stringify(h.headers()));
    ok("history", "append", "--in", path, "--cert", r.cert, "--key", r.key, "--step", "refund_issued",
      "--result", "done", "--next", r.spiffeId, "--out", path);
    h = History.parse(JSON.parse(readFileSync(path, "utf8")));
    assert.equal(h.length, 3);
    assert.equal(h.at(2)!.prev, h.at(1)!.sha256);
    const res = verify(prove(h, r.svid, { audience: AUD, body: BODY }), td.bundle);
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /3 entries/);
  });
});
