/**
 * `checkProof` and `History.check` beyond the vectors: each check of
 * docs/history-format.md §7 that needs no trust bundle refuses its attack
 * with the verifier's code, and where two fail the earlier one in §7 wins.
 * (The Python suite has the same cases, plus certificates it can build:
 * a P-256-less leaf and a non-DER extension.)
 */

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { describe, it } from "node:test";

import { b64u, canonicalJson, checkProof, History, P256_N, sha256B64u, signJws, VerificationError, type CheckContext, type Svid } from "@custody/client";
import { fixtures, fixtureSvid, NOW, SA } from "./helpers.js";

const ME = SA + "refund-agent";
const AUD = SA + "refund-tool";
const BODY = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}';
const DROP = Symbol("drop");
type Over = Record<string, unknown>;

const me = fixtureSvid("refund-agent");
const other = fixtureSvid("approvals");

function merge(base: Over, over: Over): Over {
  const out: Over = { ...base, ...over };
  for (const k of Object.keys(out)) if (out[k] === DROP) delete out[k];
  return out;
}
const json = (x: unknown): Uint8Array => (x instanceof Uint8Array ? x : typeof x === "string" ? new TextEncoder().encode(x) : canonicalJson(x));
const header = (svid: Svid, typ = "wfh+jwt", over: Over = {}) => merge({ alg: "ES256", typ, "x5t#S256": svid.x5t }, over);
const entryPayload = (over: Over = {}) =>
  merge({ v: 1, wid: "wf-1", seq: 0, prev: null, iss: ME, nxt: ME, step: "checked", result: "ok", iat: NOW - 100, exp: NOW + 3600 }, over);
const entry = (svid: Svid, payload: unknown = entryPayload(), hdr: unknown = header(svid)) => signJws(svid, json(hdr), json(payload));
const proofPayload = (entries: string[], over: Over = {}) =>
  merge(
    { v: 1, iss: ME, aud: AUD, wid: "wf-1", head: sha256B64u(entries.at(-1)!), len: entries.length, bdy: sha256B64u(BODY), iat: NOW - 5, exp: NOW + 55, jti: b64u(new Uint8Array(16)) },
    over,
  );

function request(opts: { entries?: string[]; proof?: string; certs?: Uint8Array[]; proofOver?: Over } = {}): Record<string, string> {
  const entries = opts.entries ?? [entry(me)];
  const proof = opts.proof ?? signJws(me, json(header(me, "wfh-proof+jwt")), json(proofPayload(entries, opts.proofOver)));
  const certs = opts.certs ?? [me.leafDer];
  return { "workflow-history": entries.join("~"), "workflow-history-proof": proof, "workflow-history-certs": certs.map((c) => b64u(c)).join("~") };
}

function verdict(headers: unknown, ctx: CheckContext = {}): string {
  try {
    checkProof(headers as Record<string, string>, { now: NOW, peer: ME, audience: AUD, body: BODY, ...ctx });
  } catch (e) {
    if (e instanceof VerificationError) return e.reason;
    throw e;
  }
  return "ok";
}

const withSig = (jws: string, sig: Uint8Array | string) => jws.slice(0, jws.lastIndexOf(".") + 1) + (typeof sig === "string" ? sig : b64u(sig));
const int32 = (n: bigint) => Buffer.from(n.toString(16).padStart(64, "0"), "hex");
const sig = (r: bigint, s: bigint) => new Uint8Array([...int32(r), ...int32(s)]);

describe("the holder's check, step by step (docs/history-format.md §7)", () => {
  it("a well-formed request passes, with or without the optional context", () => {
    assert.equal(verdict(request()), "ok");
    checkProof(request(), { now: NOW });
  });

  it("step 0: repeated headers and bytes outside printable ASCII, per header in order", () => {
    const good = request();
    const h = good["workflow-history"]!;
    const p = good["workflow-history-proof"]!;
    const c = good["workflow-history-certs"]!;
    assert.equal(verdict([...Object.entries(good), ["Workflow-History", h]]), "header_repeated");
    assert.equal(verdict({ ...good, "workflow-history": h + " " }), "history_malformed");
    assert.equal(verdict({ ...good, "workflow-history-proof": p + "\x7f" }), "proof_malformed");
    assert.equal(verdict({ ...good, "workflow-history-certs": c + "é" }), "cert_malformed");
    assert.equal(verdict({ ...good, "workflow-history": 7 }), "history_malformed");
    assert.equal(verdict([...Object.entries({ ...good, "workflow-history": h + "\n" }), ["WORKFLOW-HISTORY-PROOF", p]]), "history_malformed");
    assert.equal(verdict([...Object.entries({ ...good, "workflow-history-proof": p + "\t" }), ["WORKFLOW-HISTORY-CERTS", c]]), "proof_malformed");
  });

  it("steps 1 and 2: header caps, then presence", () => {
    const good = request();
    const big = "A".repeat(49153);
    assert.equal(verdict({ ...good, "workflow-history-certs": big }), "header_too_large");
    assert.equal(verdict({ "workflow-history-proof": big }), "header_too_large");
    assert.equal(verdict({ ...good, "workflow-history-certs": "A".repeat(49152) }), "cert_malformed");
    assert.equal(verdict({}), "history_missing");
    assert.equal(verdict({ "workflow-history": good["workflow-history"] }), "proof_missing");
    assert.equal(verdict({ "workflow-history": good["workflow-history"], "workflow-history-proof": good["workflow-history-proof"] }), "certs_missing");
  });

  it("steps 3 and 4: counts, then each certificate in order", () => {
    const e = entry(me);
    assert.equal(verdict(request({ entries: Array(33).fill(e), certs: Array(33).fill(me.leafDer) })), "history_too_large");
    assert.equal(verdict(request({ entries: Array(32).fill(e), certs: Array(33).fill(me.leafDer) })), "certs_too_many");
    assert.equal(verdict(request({ certs: Array(32).fill(me.leafDer) })), "ok");
    const c = request()["workflow-history-certs"]!;
    const good = request();
    assert.equal(verdict({ ...good, "workflow-history-certs": c + "~" }), "cert_malformed");
    assert.equal(verdict({ ...good, "workflow-history-certs": c + "~AB==" }), "base64_noncanonical");
    assert.equal(verdict({ ...good, "workflow-history-certs": b64u("not a certificate") + "~AB==" }), "cert_malformed");
  });

  const entryForms: Array<[string, () => string, string]> = [
    ["empty", () => "", "history_malformed"],
    ["two segments", () => entry(me).slice(0, entry(me).lastIndexOf(".")), "history_malformed"],
    ["four segments", () => entry(me) + ".x", "history_malformed"],
    ["header not canonical", () => "AB==." + entry(me).split(".").slice(1).join("."), "base64_noncanonical"],
    ["header not JSON", () => entry(me, entryPayload(), "not json"), "history_malformed"],
    ["header an array", () => entry(me, entryPayload(), '["ES256"]'), "history_malformed"],
    ["header member twice", () => entry(me, entryPayload(), '{"alg":"ES256","alg":"ES256","typ":"wfh+jwt"}'), "duplicate_member"],
    ["no alg", () => entry(me, entryPayload(), header(me, "wfh+jwt", { alg: DROP })), "signature_alg"],
    ["alg none and typ JWT", () => entry(me, entryPayload(), header(me, "JWT", { alg: "none" })), "signature_alg"],
    ["a proof's typ", () => entry(me, entryPayload(), header(me, "wfh-proof+jwt")), "header_typ"],
    ["kid", () => entry(me, entryPayload(), header(me, "wfh+jwt", { kid: "k" })), "header_members"],
    ["kid instead of x5t", () => entry(me, entryPayload(), header(me, "wfh+jwt", { "x5t#S256": DROP, kid: "k" })), "header_members"],
    ["x5t a number", () => entry(me, entryPayload(), header(me, "wfh+jwt", { "x5t#S256": 7 })), "member_type"],
    ["x5t padded", () => entry(me, entryPayload(), header(me, "wfh+jwt", { "x5t#S256": "AB==" })), "base64_noncanonical"],
    ["header before payload", () => entry(me, "{", header(me, "wfh+jwt", { jku: "https://x" })), "header_members"],
    ["payload an array", () => entry(me, "[1]"), "history_malformed"],
    ["payload member twice", () => entry(me, '{"v":1,"v":1}'), "duplicate_member"],
    ["payload before signature", () => withSig(entry(me, "{"), new Uint8Array(63)), "history_malformed"],
    ["signature padded", () => withSig(entry(me), "AB=="), "base64_noncanonical"],
    ["signature of 63 bytes", () => withSig(entry(me), new Uint8Array(63)), "signature_format"],
    ["signature of 65 bytes", () => withSig(entry(me), new Uint8Array(65)), "signature_format"],
    ["r = 0", () => withSig(entry(me), sig(0n, 1n)), "signature_range"],
    ["s = n", () => withSig(entry(me), sig(1n, P256_N)), "signature_range"],
    ["high s", () => withSig(entry(me), sig(1n, P256_N / 2n + 1n)), "signature_high_s"],
    ["signature form before members", () => withSig(entry(me, entryPayload({ v: DROP })), new Uint8Array(64)), "signature_range"],
  ];
  for (const [what, make, code] of entryForms) {
    it(`step 5, entry form: ${what} -> ${code}`, () => {
      assert.equal(verdict(request({ entries: [make()] })), code);
    });
  }

  const members: Array<[Over, string]> = [
    [{ v: DROP }, "missing_member"],
    [{ v: "1" }, "member_type"],
    [{ v: true }, "member_type"],
    [{ v: 1.5 }, "member_type"],
    [{ v: 2, seq: DROP }, "version_unsupported"],
    [{ zzz: 1, seq: DROP }, "unknown_member"],
    [{ wid: 7 }, "member_type"],
    [{ seq: -1 }, "member_type"],
    [{ seq: "0" }, "member_type"],
    [{ prev: 7 }, "member_type"],
    [{ prev: "AB==" }, "base64_noncanonical"],
    [{ prev: b64u(new Uint8Array(33)) }, "member_type"],
    [{ prev: DROP, iss: 7 }, "missing_member"],
    [{ iss: DROP }, "missing_member"],
    [{ iss: 7 }, "member_type"],
    [{ iss: "https://example.org/a" }, "member_spiffe_id"],
    [{ iss: "spiffe://Example.org/a" }, "member_spiffe_id"],
    [{ nxt: "spiffe://" + "a".repeat(256) + "/x" }, "member_spiffe_id"],
    [{ nxt: SA + "a/", step: "" }, "member_spiffe_id"],
    [{ step: "" }, "member_type"],
    [{ step: null }, "member_type"],
    [{ result: DROP }, "missing_member"],
    [{ result: 1 }, "member_type"],
    [{ iat: -5 }, "member_type"],
    [{ exp: DROP }, "missing_member"],
    [{ claims: [] }, "member_type"],
    [{ claims: null }, "member_type"],
    [{ claims: { a: [-9007199254740992] } }, "member_type"],
    [{ claims: { a: 9007199254740991, b: -9007199254740991 } }, "ok"],
    [{ result: "" }, "ok"],
    [{ exp: 2 ** 53 - 1 }, "ok"],
  ];
  for (const [over, code] of members) {
    it(`step 5.6, members: ${JSON.stringify(over, (_k, v) => (v === DROP ? "(absent)" : v)).slice(0, 60)} -> ${code}`, () => {
      assert.equal(verdict(request({ entries: [entry(me, entryPayload(over))] })), code);
    });
  }

  for (const [spelling, code] of [["1", "ok"], ["1.0", "member_type"], ["1e0", "member_type"], ["-1", "member_type"], ["-0", "member_type"], ["01", "history_malformed"]]) {
    it(`v spelled ${spelling} -> ${code}`, () => {
      const text = Buffer.from(canonicalJson(entryPayload())).toString().replace('"v":1', `"v":${spelling}`);
      assert.equal(verdict(request({ entries: [entry(me, text)] })), code);
    });
  }

  it("steps 5.8 to 5.10: the signer, as far as no trust bundle is needed", () => {
    assert.equal(verdict(request({ entries: [entry(me, entryPayload(), header(me, "wfh+jwt", { "x5t#S256": b64u(new Uint8Array(32)) }))] })), "cert_missing");
    assert.equal(verdict(request({ entries: [entry(other, entryPayload({ iss: other.spiffeId }))] })), "cert_missing");
    const ca = new Uint8Array(new X509Certificate(fixtures.cas.example!.cert_pem).raw);
    const caHeader = header(me, "wfh+jwt", { "x5t#S256": sha256B64u(ca) });
    assert.equal(verdict(request({ entries: [entry(me, entryPayload(), caHeader)], certs: [me.leafDer, ca] })), "cert_spiffe_id");
    assert.equal(verdict(request({ entries: [entry(other)], certs: [me.leafDer, other.leafDer] })), "signer_mismatch");
    const e = entry(me);
    const forged = withSig(entry(me, entryPayload({ result: "denied" })), e.slice(e.lastIndexOf(".") + 1));
    assert.equal(verdict(request({ entries: [forged] })), "signature_invalid");
  });

  it("step 6: the proof's form and members", () => {
    const es = [entry(me)];
    const ph = json(header(me, "wfh-proof+jwt"));
    assert.equal(verdict(request({ proof: "" })), "proof_malformed");
    assert.equal(verdict(request({ entries: es, proof: signJws(me, json(header(me)), json(proofPayload(es))) })), "header_typ");
    assert.equal(verdict(request({ entries: es, proof: signJws(me, ph, json('{"v":1,"v":1}')) })), "duplicate_member");
    const cases: Array<[Over, string]> = [
      [{ v: DROP }, "missing_member"],
      [{ nxt: ME }, "unknown_member"],
      [{ aud: "" }, "member_type"],
      [{ iss: "spiffe://example.org/a/../b" }, "member_spiffe_id"],
      [{ head: b64u(new Uint8Array(31)) }, "member_type"],
      [{ len: "1" }, "member_type"],
      [{ bdy: "AB==" }, "base64_noncanonical"],
      [{ jti: DROP }, "missing_member"],
      [{ jti: 16 }, "member_type"],
      [{ jti: "A".repeat(257), iat: "x" }, "member_type"],
      [{ jti: "A".repeat(256) }, "ok"],
      [{ jti: b64u(new Uint8Array(15)) }, "proof_jti"],
      [{ jti: "é".repeat(129) }, "member_type"],
    ];
    for (const [over, code] of cases) {
      assert.equal(verdict(request({ entries: es, proof: signJws(me, ph, json(proofPayload(es, over))) })), code, JSON.stringify(over));
    }
  });

  it("step 7: the chain, through checkProof and History.check alike", () => {
    const e0 = entry(me);
    const link = sha256B64u(e0);
    const handedOn = entry(me, entryPayload({ nxt: SA + "approvals" }));
    const cases: Array<[string[], string]> = [
      [[entry(me, entryPayload({ prev: b64u(new Uint8Array(32)) }))], "chain_prev"],
      [[e0, entry(me, entryPayload({ seq: 2, prev: link }))], "chain_seq"],
      [[e0, entry(me, entryPayload({ seq: 1 }))], "chain_prev"],
      [[e0, entry(me, entryPayload({ seq: 1, prev: b64u(new Uint8Array(32)) }))], "chain_prev"],
      [[e0, entry(me, entryPayload({ seq: 1, prev: link, wid: "wf-2" }))], "chain_wid"],
      [[handedOn, entry(me, entryPayload({ seq: 1, prev: sha256B64u(handedOn) }))], "chain_custody"],
      [[entry(me, entryPayload({ exp: NOW - 31 }))], "entry_expired"],
      [[entry(me, entryPayload({ exp: NOW - 30 }))], "ok"],
      [[e0, entry(me, entryPayload({ seq: 1, prev: link }))], "ok"],
    ];
    for (const [entries, code] of cases) {
      assert.equal(verdict(request({ entries })), code, code);
      assert.equal(historyCheck(entries), code, code);
    }
  });

  it("History.check gives the entry codes and counts", () => {
    assert.equal(historyCheck([entry(me, '{"v":1,"wid":"w","seq":-0}')]), "member_type");
    assert.equal(historyCheck([withSig(entry(me), new Uint8Array(64))]), "signature_range");
    assert.equal(historyCheck(Array(33).fill(entry(me))), "history_too_large");
    assert.throws(() => new History([entry(me)], Array(33).fill(me.leafDer)).check({ now: NOW }), (e: unknown) => e instanceof VerificationError && e.reason === "certs_too_many");
  });

  it("step 8: the proof's bindings, in order, each when its context is given", () => {
    const good = request();
    assert.equal(verdict(good, { peer: SA + "mallory" }), "proof_signer");
    const handedOn = [entry(me, entryPayload({ nxt: SA + "approvals" }))];
    assert.equal(verdict(request({ entries: handedOn })), "proof_holder");
    assert.equal(verdict(request({ entries: handedOn }), { peer: undefined }), "proof_holder");
    assert.equal(verdict(good, { peer: undefined }), "ok");
    assert.equal(verdict(good, { audience: SA + "other-tool" }), "proof_audience");
    assert.equal(verdict(good, { audience: undefined }), "ok");
    assert.equal(verdict(request({ proofOver: { wid: "wf-2" } })), "proof_wid");
    assert.equal(verdict(request({ proofOver: { len: 2 } })), "proof_len");
    assert.equal(verdict(request({ proofOver: { head: b64u(new Uint8Array(32)) } })), "proof_head");
    assert.equal(verdict(good, { body: BODY + " " }), "proof_body");
    assert.equal(verdict(good, { body: new TextEncoder().encode(BODY) }), "ok");
    assert.equal(verdict(good, { body: undefined }), "ok");
    assert.equal(verdict(request({ proofOver: { iat: NOW + 31, exp: NOW + 60 } })), "proof_not_yet_valid");
    assert.equal(verdict(request({ proofOver: { iat: NOW + 30, exp: NOW + 60 } })), "ok");
    assert.equal(verdict(request({ proofOver: { iat: NOW - 100, exp: NOW - 31 } })), "proof_expired");
    assert.equal(verdict(request({ proofOver: { iat: NOW - 20, exp: NOW + 41 } })), "proof_lifetime");
    assert.equal(verdict(request({ proofOver: { iat: NOW - 20, exp: NOW + 40 } })), "ok");
    assert.equal(verdict(request({ proofOver: { iat: NOW, exp: NOW - 1 } })), "proof_lifetime");
    assert.equal(verdict(request({ proofOver: { iat: NOW, exp: NOW } })), "ok");
    assert.equal(verdict(request({ proofOver: { wid: "wf-2", len: 5 } }), { peer: SA + "mallory", audience: "x" }), "proof_signer");
    assert.equal(verdict(request({ proofOver: { len: 5, bdy: b64u(new Uint8Array(32)) } })), "proof_len");
  });

  it("all entries, then the proof, then the chain; each entry completely before the next", () => {
    const e0 = entry(me);
    const badChain = [e0, entry(me, entryPayload({ seq: 5 }))];
    assert.equal(verdict(request({ entries: badChain, proofOver: { jti: "short" } })), "base64_noncanonical");
    assert.equal(verdict(request({ entries: badChain })), "chain_seq");
    assert.equal(verdict(request({ entries: [withSig(e0, new Uint8Array(63)), entry(me, "{")] })), "signature_format");
  });
});

function historyCheck(entries: string[]): string {
  try {
    new History(entries, [me.leafDer]).check({ now: NOW });
  } catch (e) {
    if (e instanceof VerificationError) return e.reason;
    throw e;
  }
  return "ok";
}
