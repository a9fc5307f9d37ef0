/** Signing: low-S always, chain rules like the CLI's, the SVID checks. */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";

import {
  b64uDecode,
  canonical,
  checkProof,
  History,
  HistoryError,
  isSpiffeId,
  NotHolderError,
  P256_N,
  prove,
  Svid,
  SvidError,
  VerificationError,
  verifySignature,
} from "@custody/client";
import { fixtures, fixtureSvid, NOW, SA } from "./helpers.js";

const f = fixtureSvid("fraud-agent");
const a = fixtureSvid("approvals");
const r = fixtureSvid("refund-agent");
const m = fixtureSvid("mallory");
const sOf = (jws: string) => BigInt("0x" + Buffer.from(b64uDecode(jws.split(".")[2]!).subarray(32)).toString("hex"));

describe("signing", () => {
  it("signatures are always 64 bytes and low-S", () => {
    for (let i = 0; i < 300; i++) {
      const sig = f.sign(randomBytes(10));
      assert.equal(sig.byteLength, 64);
      const s = BigInt("0x" + Buffer.from(sig.subarray(32)).toString("hex"));
      assert.ok(s >= 1n && s <= P256_N / 2n);
    }
    let h = new History();
    for (let i = 0; i < 12; i++) h = h.append(f, { step: `s${i}`, next: f.spiffeId, iat: NOW });
    const headers = prove(h, f, { audience: "aud", body: "{}", now: NOW });
    for (const jws of [...h.entries, headers["workflow-history-proof"]!]) {
      assert.ok(sOf(jws) <= P256_N / 2n);
      assert.ok(verifySignature(jws, f.leaf));
    }
  });

  it("builds the chain and it checks", () => {
    let h = new History().append(f, { step: "fraud_check_passed", next: a.spiffeId, claims: { order: "o-1" }, iat: NOW });
    h = h.append(a, { step: "human_approval", next: r.spiffeId, iat: NOW + 1 });
    assert.deepEqual([...h].map((e) => e.seq), [0, 1]);
    assert.equal(h.at(1)!.prev, h.at(0)!.sha256);
    assert.equal(h.at(0)!.prev, null);
    assert.equal(h.at(0)!.wid, h.at(1)!.wid);
    assert.equal(b64uDecode(h.wid!).byteLength, 16);
    assert.equal(h.holder, r.spiffeId);
    assert.equal(h.certs.length, 2);
    assert.deepEqual(h.at(0)!.claims, { order: "o-1" });
    assert.equal(h.at(0)!.result, "approved");
    assert.equal(h.at(1)!.exp - h.at(1)!.iat, 3600);
    const headers = prove(h, r, { audience: SA + "refund-tool", body: new Uint8Array([120]), now: NOW + 2 });
    assert.equal(headers["workflow-history-certs"]!.split("~").length, 3);
    checkProof(headers, { now: NOW + 2 });
    // Round trip through the headers (names case-insensitive, a Headers object too).
    const upper = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toUpperCase(), v]));
    const again = History.parse(upper);
    assert.deepEqual(again.entries, h.entries);
    assert.deepEqual(again.certs, [...h.certs, r.leafDer]);
    assert.deepEqual(History.parse(new Headers(headers)).entries, h.entries);
    assert.deepEqual(new History().headers(), {});
    // Certificates are deduplicated by DER.
    const h2 = h.append(r, { step: "refund_issued", next: f.spiffeId, iat: NOW + 3 }).append(f, { step: "done", next: r.spiffeId, iat: NOW + 4 });
    assert.equal(h2.certs.length, 3);
    // Immutable.
    assert.equal(h.length, 2);
    assert.throws(() => (h.entries as string[]).push("x"));
  });

  it("only the holder may append or prove", () => {
    const h = new History().append(f, { step: "fraud_check_passed", next: a.spiffeId });
    assert.throws(() => h.append(m, { step: "human_approval", next: m.spiffeId }), NotHolderError);
    assert.throws(() => prove(h, m, { audience: "aud", body: "" }), NotHolderError);
    // Non-strict proving is for testing refusals.
    prove(h, m, { audience: "aud", body: "", strict: false });
    assert.throws(() => h.append(a, { step: "x", next: a.spiffeId, wid: "other" }), HistoryError);
    h.append(a, { step: "x", next: a.spiffeId, wid: h.wid! });
  });

  it("checks its arguments", () => {
    assert.throws(() => new History().append(f, { step: "s", next: "https://example.org/x" }), HistoryError);
    assert.throws(() => new History().append(f, { step: "", next: f.spiffeId }), HistoryError);
    assert.throws(() => new History().append(f, { step: "s", next: f.spiffeId, claims: { x: "y".repeat(2100) } }), HistoryError);
    assert.throws(() => new History().append(f, { step: "s", next: f.spiffeId, wid: "" }), HistoryError);
    const h = new History().append(f, { step: "s", next: f.spiffeId });
    assert.throws(() => prove(h, f, { audience: "aud", body: "", ttl: 61 }), HistoryError);
    assert.throws(() => prove(h, f, { audience: "aud", body: "", jti: new Uint8Array(15) }), HistoryError);
    assert.throws(() => prove(h, f, { audience: "", body: "" }), HistoryError);
    assert.throws(() => prove(new History(), f, { audience: "aud", body: "" }), HistoryError);
    let long = new History();
    for (let i = 0; i < 32; i++) long = long.append(f, { step: "s", next: f.spiffeId });
    assert.throws(() => long.append(f, { step: "s", next: f.spiffeId }), /at most 32/);
  });

  it("tampering is detected by the self-check", () => {
    const h = new History().append(f, { step: "fraud_check_passed", next: a.spiffeId, claims: { amount: 1 }, iat: NOW });
    const [head, payload, sig] = h.entries[0]!.split(".") as [string, string, string];
    const forged = JSON.parse(Buffer.from(b64uDecode(payload)).toString());
    forged.claims.amount = 2;
    const bad = new History([`${head}.${Buffer.from(JSON.stringify(forged)).toString("base64url")}.${sig}`], h.certs);
    assert.throws(() => bad.check({ now: NOW }), (e: unknown) => e instanceof VerificationError && e.reason === "signature_invalid");
    // A missing certificate, an expired entry.
    assert.throws(() => new History(h.entries, []).check({ now: NOW }), (e: unknown) => e instanceof VerificationError && e.reason === "cert_missing");
    assert.throws(() => h.check({ now: NOW + 3600 + 31 }), (e: unknown) => e instanceof VerificationError && e.reason === "entry_expired");
    h.check({ now: NOW });
  });

  it("SVID checks", () => {
    assert.equal(r.spiffeId, SA + "refund-agent");
    assert.equal(r.x5t.length, 43);
    assert.equal(r.chainDer.length, 1);
    assert.ok(r.certChainPem().startsWith("-----BEGIN CERTIFICATE-----"));
    assert.match(r.keyPem(), /BEGIN PRIVATE KEY/);
    assert.throws(() => fixtureSvid("two-uris"), SvidError);
    assert.throws(() => fixtureSvid("intermediate"), SvidError); // spiffe://example.org: no path
    // The certificate must hold the key.
    const ff = fixtures.svids["fraud-agent"]!;
    const rk = fixtures.svids["refund-agent"]!;
    assert.throws(() => Svid.fromDer(b64uDecode(ff.cert), b64uDecode(rk.key)), /does not hold the key/);
    // PEM round trip, with an intermediate after the leaf.
    const via = fixtureSvid("via-intermediate");
    const inter = fixtureSvid("fraud-agent");
    const two = Svid.fromPem(via.certChainPem() + inter.certChainPem(), via.keyPem());
    assert.equal(two.chainDer.length, 2);
    assert.equal(two.x5t, via.x5t);
    assert.throws(() => Svid.fromPem("", via.keyPem()), SvidError);
    assert.throws(() => Svid.fromPem(via.certChainPem(), "nope"), SvidError);
  });

  it("SPIFFE IDs as in §9", () => {
    for (const ok of ["spiffe://example.org/a", "spiffe://ex-a_m.ple/a/B.c-d_e", "spiffe://example.org"]) assert.ok(isSpiffeId(ok), ok);
    for (const bad of ["spiffe://Example.org/a", "spiffe://example.org/", "spiffe://example.org/a/../b", "spiffe://example.org/./b",
      "SPIFFE://example.org/a", "spiffe://example.org:8080/a", "spiffe://example.org/a?b", "spiffe://example.org/a#b", "spiffe://a/" + "x".repeat(2040)]) {
      assert.ok(!isSpiffeId(bad), bad);
    }
    assert.ok(!isSpiffeId("spiffe://example.org", { requirePath: true }));
  });
});

describe("signers refuse what the verifier refuses, measured as the verifier measures", () => {
  const nested = (arrays: number): unknown => (arrays === 0 ? 0 : [nested(arrays - 1)]);
  const append = (claims: unknown, extra: Record<string, unknown> = {}) =>
    new History().append(f, { step: "s", next: f.spiffeId, claims: claims as Record<string, unknown>, iat: NOW, ...extra });

  it("claims up to 2048 bytes as RFC 8785 are signed, one more is not", () => {
    // {"pad":"…"} is 10 bytes around the string; `1E2`-style spellings do not arise in JS values.
    const at = { pad: "x".repeat(2038) };
    assert.equal(canonical(at).length, 2048);
    append(at).check({ now: NOW });
    assert.throws(() => append({ pad: "x".repeat(2039) }), /claims_too_large/);
    // Escapes count as RFC 8785 writes them: "\u0001" is 6 bytes.
    assert.throws(() => append({ pad: "\u0001".repeat(340) }), /claims_too_large/);
  });

  for (const [name, claims, reason] of [
    ["2^53", { n: 2 ** 53 }, /member_type/],
    ["-2^53 in an array", { n: [-(2 ** 53)] }, /member_type/],
    ["1e300", { n: 1e300 }, /member_type/],
    ["a big bigint", { n: 2n ** 64n }, /member_type/],
    ["33 levels", { d: nested(31) }, /history_malformed/],
    ["a lone surrogate", { s: "\ud800" }, /history_malformed/],
    ["NaN", { n: NaN }, /not JSON/],
    ["a function", { f: () => 1 }, /not JSON/],
  ] as const) {
    it(`claims with ${name} are not signed`, () => {
      assert.throws(() => append(claims), (e: unknown) => e instanceof HistoryError && reason.test(e.message));
    });
  }

  it("claims at the limits are signed and check", () => {
    const h = append({ d: nested(30) }).append(f, { step: "s", next: f.spiffeId, claims: { n: 2 ** 53 - 1, m: -(2 ** 53 - 1), b: 7n }, iat: NOW });
    h.check({ now: NOW });
  });

  it("times and jti the verifier refuses are not signed", () => {
    assert.throws(() => append(undefined, { iat: 2 ** 53 - 10, ttl: 100 }), /member_type/);
    const h = append(undefined);
    assert.throws(() => prove(h, f, { audience: "aud", body: "", now: NOW, jti: new Uint8Array(193) }), /member_type/);
    prove(h, f, { audience: "aud", body: "", now: NOW, jti: new Uint8Array(192) });
  });

  it("headers over the caps are not produced", () => {
    let h = new History();
    assert.throws(() => {
      for (let i = 0; i < 32; i++) h = h.append(f, { step: `s${i}`, next: f.spiffeId, claims: { pad: "x".repeat(2000) }, iat: NOW });
    }, /workflow-history would be/);
    assert.ok(h.length > 10 && h.length < 32);
    assert.ok(h.headers()["workflow-history"]!.length <= 49152);
    h.check({ now: NOW });
    assert.throws(() => prove(append(undefined), f, { audience: "a".repeat(49152), body: "", now: NOW }), /workflow-history-proof would be/);
  });
});
