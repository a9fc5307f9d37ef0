/**
 * The known-answer vectors of docs/history-format.md §10
 * (history/testdata/vectors.json). The reference signer uses RFC 6979
 * deterministic ECDSA; Node's crypto does not (random nonces), so signatures
 * are not reproduced byte for byte: every hash, canonical JSON text and
 * signing input is, and every signature (theirs and ours) verifies and is low-S.
 */

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

import {
  b64u,
  b64uDecode,
  canonicalJson,
  checkProof,
  EncodingError,
  History,
  Jws,
  P256_N,
  parseProof,
  prove,
  sha256B64u,
  strictJsonObject,
  VerificationError,
  verifySignature,
} from "@custody/client";
import { CLOCK_SKEW, MAX_CERTS, MAX_CLAIMS_BYTES, MAX_ENTRIES, MAX_HEADER_BYTES, MAX_JSON_DEPTH, MAX_JTI_CHARS, MAX_PROOF_TTL, MAX_SAFE_INTEGER } from "../dist/check.js";
import { MAX_ENTRIES as PublicMaxEntries } from "@custody/client";
import { custody, fixtures, fixtureSvid, NO_CUSTODY, NOW, SA, tmp, vector, vectors } from "./helpers.js";

const dec = (s: string) => Buffer.from(b64uDecode(s)).toString("utf8");
const signingInput = (jws: string) => jws.slice(0, jws.lastIndexOf("."));
const lowS = (jws: string) => {
  const sig = b64uDecode(jws.split(".")[2]!);
  const s = BigInt("0x" + Buffer.from(sig.subarray(32)).toString("hex"));
  return sig.byteLength === 64 && s >= 1n && s <= P256_N / 2n;
};
const certFor = (h: History, jws: Jws) => {
  const c = h.certs.find((d) => sha256B64u(d) === jws.x5t);
  assert.ok(c, "the certificate its x5t#S256 names is sent");
  return c;
};

describe("known-answer vectors", () => {
  const ok = vector("ok");

  it("decoded ok vector matches the doc: JSON, hashes, links", () => {
    const d = vectors.ok_decoded;
    const entries = ok["workflow-history"].split("~");
    assert.equal(entries.length, d.entries.length);
    entries.forEach((text, i) => {
      const want = d.entries[i]!;
      const [h, p] = text.split(".");
      assert.equal(dec(h!), want.header);
      assert.equal(dec(p!), want.payload);
      assert.equal(sha256B64u(text), want.sha256);
      // The reference signer's JSON is the canonical form: re-serialising gives the same bytes.
      assert.equal(Buffer.from(canonicalJson(JSON.parse(want.payload))).toString(), want.payload);
      assert.equal(Buffer.from(canonicalJson(JSON.parse(want.header))).toString(), want.header);
    });
    assert.equal(dec(ok["workflow-history-proof"].split(".")[1]!), d.proof_payload);
    assert.equal(Buffer.from(canonicalJson(JSON.parse(d.proof_payload))).toString(), d.proof_payload);
    assert.equal(sha256B64u(ok.body), d.body_sha256);
    const h = History.parse(ok);
    assert.equal(h.at(1)!.prev, h.at(0)!.sha256);
    assert.equal(h.at(0)!.sha256, d.entries[0]!.sha256);
    assert.equal(parseProof(ok).payload.head, h.at(1)!.sha256);
    assert.equal(parseProof(ok).payload.bdy, d.body_sha256);
  });

  it("x5t#S256 of the fixture SVIDs", () => {
    for (const [name, want] of Object.entries(vectors.ok_decoded.x5t)) {
      assert.equal(fixtureSvid(name).x5t, want);
      assert.equal(sha256B64u(b64uDecode(fixtures.svids[name]!.cert)), want);
    }
  });

  it("signing inputs and the certs header are rebuilt byte for byte", () => {
    const [fraud, appr, refund] = ["fraud-agent", "approvals", "refund-agent"].map(fixtureSvid) as [ReturnType<typeof fixtureSvid>, ReturnType<typeof fixtureSvid>, ReturnType<typeof fixtureSvid>];
    const want = ok["workflow-history"].split("~");
    // Entry 0 from scratch.
    const h0 = new History().append(fraud, {
      step: "fraud_check_passed", next: SA + "approvals", claims: { amount: 12000, currency: "USD" }, ttl: 3600, wid: "wf-123", iat: NOW - 100,
    });
    assert.equal(signingInput(h0.entries[0]!), signingInput(want[0]!));
    // Entry 1 appended to the vector's entry 0 (its prev hashes entry 0's signature too).
    const v0 = new History([want[0]!], [fraud.leafDer]);
    const h1 = v0.append(appr, { step: "human_approval", next: SA + "refund-agent", ttl: 1800, iat: NOW - 50 });
    assert.equal(signingInput(h1.entries[1]!), signingInput(want[1]!));
    // The proof over the vector's chain.
    const headers = prove(History.parse(ok), refund, { audience: vectors.audience, body: ok.body, now: NOW - 5, jti: new Uint8Array([...Array(16).keys()]) });
    assert.equal(signingInput(headers["workflow-history-proof"]!), signingInput(ok["workflow-history-proof"]));
    assert.equal(headers["workflow-history-certs"], ok["workflow-history-certs"]);
    assert.equal(headers["workflow-history"], ok["workflow-history"]);
    // A chain built here from scratch has the same certs header, and our signatures verify, low-S.
    const mine = new History()
      .append(fraud, { step: "fraud_check_passed", next: SA + "approvals", claims: { currency: "USD", amount: 12000 }, wid: "wf-123", iat: NOW - 100 })
      .append(appr, { step: "human_approval", next: SA + "refund-agent", ttl: 1800, iat: NOW - 50 });
    const mh = prove(mine, refund, { audience: vectors.audience, body: ok.body, now: NOW - 5, jti: new Uint8Array(16) });
    assert.equal(mh["workflow-history-certs"], ok["workflow-history-certs"]);
    assert.equal(signingInput(mine.entries[0]!), signingInput(want[0]!));
    for (const jws of [...mine.entries, mh["workflow-history-proof"]!]) {
      assert.ok(lowS(jws));
      assert.ok(verifySignature(jws, certFor(History.parse(mh), Jws.parse(jws))));
    }
    checkProof(mh, { now: NOW });
  });

  it("a chain rebuilt here verifies with `custody history verify` at the vector's time", { skip: NO_CUSTODY }, () => {
    const [fraud, appr, refund] = ["fraud-agent", "approvals", "refund-agent"].map(fixtureSvid) as [ReturnType<typeof fixtureSvid>, ReturnType<typeof fixtureSvid>, ReturnType<typeof fixtureSvid>];
    const ok = vector("ok");
    const h = new History()
      .append(fraud, { step: "fraud_check_passed", next: SA + "approvals", claims: { amount: 12000, currency: "USD" }, wid: "wf-123", iat: NOW - 100 })
      .append(appr, { step: "human_approval", next: SA + "refund-agent", ttl: 1800, iat: NOW - 50 });
    const headers = prove(h, refund, { audience: vectors.audience, body: ok.body, now: NOW - 5 });
    const d = tmp();
    writeFileSync(join(d, "bundle.pem"), fixtures.cas.example!.cert_pem);
    writeFileSync(join(d, "h.json"), JSON.stringify(headers));
    writeFileSync(join(d, "body"), ok.body);
    const args = ["history", "verify", "--in", join(d, "h.json"), "--bundle", join(d, "bundle.pem"), "--proof-headers", join(d, "h.json"),
      "--body", join(d, "body"), "--peer", SA + "refund-agent", "--aud", vectors.audience, "--now", String(NOW)];
    const r = custody(...args);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /2 entries/);
    // The vector itself, for comparison.
    writeFileSync(join(d, "v.json"), JSON.stringify({ "workflow-history": ok["workflow-history"], "workflow-history-certs": ok["workflow-history-certs"], "workflow-history-proof": ok["workflow-history-proof"] }));
    const rv = custody(...args.map((a) => (a === join(d, "h.json") ? join(d, "v.json") : a)));
    assert.equal(rv.status, 0, rv.stderr);
  });

  it("every signature of the ok vector verifies here (and is low-S)", () => {
    const h = History.parse(ok);
    for (const e of h) {
      assert.ok(lowS(e.compact));
      assert.ok(verifySignature(e.compact, certFor(h, e)));
    }
    const proof = parseProof(ok);
    assert.ok(verifySignature(proof.compact, certFor(h, proof)));
    checkProof(ok, { now: NOW });
    // The rsa_authority vector's ES256 signatures too (its SVID key is P-256).
    const rsa = vector("rsa_authority");
    const hr = History.parse(rsa);
    assert.ok(verifySignature(hr.entries[0]!, certFor(hr, hr.at(0)!)));
    checkProof(rsa, { now: NOW });
  });

  // Vectors whose verdict needs the trust bundle: a holder cannot see it.
  const needsTrust: Record<string, string> = { impostor: "cert_untrusted" };

  it("every holder_check vector (and every vector not needing trust) gives its verdict and code", () => {
    assert.ok(vectors.vectors.filter((v) => v.holder_check).length >= 29);
    const seen = new Set<string>();
    for (const v of vectors.vectors) {
      if (v.name in needsTrust) {
        assert.equal(v.expect, needsTrust[v.name]);
        continue;
      }
      let got = "ok";
      try {
        checkProof(v, { now: v.now, peer: v.peer, audience: vectors.audience, body: v.body });
      } catch (e) {
        if (!(e instanceof VerificationError)) throw e;
        got = e.reason;
      }
      assert.equal(got, v.expect, v.name);
      seen.add(got);
    }
    assert.ok(seen.has("ok") && seen.size > 10, "both verdicts occur: the check is not vacuous");
  });

  it("the impostor is refused only for trust, which a holder cannot judge", () => {
    const v = vector("impostor");
    checkProof(v, { now: v.now, peer: v.peer, audience: vectors.audience, body: v.body });
  });

  it("the client's constants are the shared limits of vectors.json (issue 17)", () => {
    const limits = { ...vectors.limits };
    assert.equal(limits.max_chain_depth, 4); // path building: the server's, not the holder's
    delete limits.max_chain_depth;
    assert.deepEqual(limits, {
      max_certs: MAX_CERTS,
      max_claims_bytes: MAX_CLAIMS_BYTES,
      max_entries: MAX_ENTRIES,
      max_header_bytes: MAX_HEADER_BYTES,
      max_json_depth: MAX_JSON_DEPTH,
      max_jti_chars: MAX_JTI_CHARS,
      max_proof_lifetime_seconds: MAX_PROOF_TTL,
      max_safe_integer: MAX_SAFE_INTEGER,
      skew_seconds: CLOCK_SKEW,
    });
    assert.equal(PublicMaxEntries, limits.max_entries);
  });

  it("the high-S twin does not verify", () => {
    const hi = History.parse(vector("high_s"));
    assert.equal(lowS(hi.entries[1]!), false);
    assert.equal(verifySignature(hi.entries[1]!, certFor(hi, hi.at(1)!)), false);
  });

  it("a body other than the proven one has another bdy", () => {
    const v = vector("body_changed");
    assert.notEqual(parseProof(v).payload.bdy, sha256B64u(v.body));
  });
});

describe("encodings", () => {
  for (const text of ["a=", "ab+c", "ab/c", "ab c", "AB==", "AAB", "A", "_-_-_-_-x"]) {
    it(`base64url refuses non-canonical ${JSON.stringify(text)}`, () => {
      assert.throws(() => b64uDecode(text), EncodingError);
    });
  }

  it("base64url round trip", () => {
    for (let n = 0; n < 40; n++) {
      const data = new Uint8Array([...Array(n).keys()]);
      assert.deepEqual(b64uDecode(b64u(data)), data);
      assert.ok(!b64u(data).includes("="));
    }
  });

  it("canonical JSON: compact, members in code point order, escapes like the Rust/Python signers", () => {
    const v = { "😀": 2, "\uffff": 3, "é": 1, a: "\u0001☃\"\\\n/\u2028", b: [1, -2.5, true, null, { z: 0, y: {} }] };
    assert.equal(
      Buffer.from(canonicalJson(v)).toString("utf8"),
      '{"a":"\\u0001☃\\"\\\\\\n/\u2028","b":[1,-2.5,true,null,{"y":{},"z":0}],"é":1,"\uffff":3,"😀":2}',
    );
    assert.throws(() => canonicalJson({ x: NaN }), EncodingError);
  });

  it("strict JSON refuses duplicate members at any depth", () => {
    assert.deepEqual(strictJsonObject('{"a":{"b":1},"c":[{"d":2}]}'), { a: { b: 1 }, c: [{ d: 2 }] });
    assert.throws(() => strictJsonObject('{"a":1,"a":2}'), /duplicate/);
    assert.throws(() => strictJsonObject('{"a":{"b":1,"b":1}}'), /duplicate/);
    assert.throws(() => strictJsonObject('{"a":[{"b":1,"b":1}]}'), /duplicate/);
    assert.throws(() => strictJsonObject("[1]"), EncodingError);
    assert.throws(() => strictJsonObject('{"a":1} x'), EncodingError);
    assert.throws(() => strictJsonObject("{'a':1}"), EncodingError);
    assert.equal(Object.keys(strictJsonObject('{"__proto__":1}')).join(), "__proto__");
  });
});
