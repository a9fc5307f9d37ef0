/**
 * The verifier's checks a holder can run without the trust bundle
 * (docs/history-format.md §7), in the verifier's order, with its reason codes.
 *
 * Of step 5.8 (the signer certificate) only what needs no bundle runs: a sent
 * certificate with the `x5t#S256` (`cert_missing`), its one URI SAN a SPIFFE
 * ID with a path (`cert_spiffe_id`), a P-256 key (`cert_key_type`). The other
 * leaf rules of §6.2, the trust domain, the path and the certificate times
 * are the server's (or `custody history verify`'s). So on every input decided
 * before a certificate is judged against a bundle, these checks give the
 * verifier's verdict and code (history/testdata/vectors.json,
 * `"holder_check": true`).
 */

import { verify as cryptoVerify, X509Certificate } from "node:crypto";

import { b64uDecode, bytesEqual, EncodingError, isSpiffeId, sha256, sha256B64u, utf8 } from "./codec.js";
import { VerificationError } from "./errors.js";
import * as jcs from "./jcs.js";
import { DuplicateMember, JsonError, MAX_JSON_DEPTH, parseJson, spelledAsInteger, type JsonObject } from "./json.js";
import { bytesToBigInt, isP256, P256_HALF_N, P256_N, spiffeIdOf, SvidError } from "./svid.js";

// The limits of §8 (history/testdata/vectors.json "limits"; the tests compare).
export const MAX_HEADER_BYTES = 49152;
export const MAX_ENTRIES = 32;
export const MAX_CERTS = 32;
export const MAX_CLAIMS_BYTES = 2048;
export const CLOCK_SKEW = 30;
export const MAX_PROOF_TTL = 60;
export const MAX_JTI_CHARS = 256;
export const MAX_SAFE_INTEGER = jcs.MAX_SAFE_INTEGER;
export { MAX_JSON_DEPTH };

export const ALG = "ES256";
export const ENTRY_TYP = "wfh+jwt";
export const PROOF_TYP = "wfh-proof+jwt";
export const X5T = "x5t#S256";
const ENTRY_MEMBERS = ["v", "wid", "seq", "prev", "iss", "nxt", "step", "result", "iat", "exp", "claims"];
const PROOF_MEMBERS = ["v", "iss", "aud", "wid", "head", "len", "bdy", "iat", "exp", "jti"];

/** What is checked: an entry, the proof, or a certificate. */
export interface Part {
  what: string;
  malformed: string;
  typ: string;
}

export const entryPart = (i: number): Part => ({ what: `entry ${i}`, malformed: "history_malformed", typ: ENTRY_TYP });
const certPart = (i: number): Part => ({ what: `certificate ${i}`, malformed: "cert_malformed", typ: "" });
export const PROOF: Part = { what: "proof", malformed: "proof_malformed", typ: PROOF_TYP };

export function refuse(reason: string, part: Part | undefined, detail: string): VerificationError {
  return new VerificationError(reason, part ? `${part.what}: ${detail}` : detail);
}

function b64(text: string, part: Part, what: string): Uint8Array {
  try {
    return b64uDecode(text);
  } catch (e) {
    if (e instanceof EncodingError) throw refuse("base64_noncanonical", part, `${what}: ${e.message}`);
    throw e;
  }
}

/** Strict JSON that must be an object: malformed, or `duplicate_member`. */
export function readObject(data: Uint8Array, part: Part, what: string): JsonObject {
  let value: unknown;
  try {
    value = parseJson(data);
  } catch (e) {
    if (e instanceof DuplicateMember) throw refuse("duplicate_member", part, `${what}: ${e.message}`);
    if (e instanceof JsonError) throw refuse(part.malformed, part, `${what}: ${e.message}`);
    throw e;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw refuse(part.malformed, part, `${what} is not a JSON object`);
  return value as JsonObject;
}

function hash32(value: unknown, part: Part, member: string): Uint8Array {
  if (typeof value !== "string") throw refuse("member_type", part, `${member} is not a string`);
  const raw = b64(value, part, member);
  if (raw.byteLength !== 32) throw refuse("member_type", part, `${member} is not 32 bytes`);
  return raw;
}

// --- steps 1 to 4: headers and certificates ---------------------------------

/** Steps 1 and 2: each header at most 48 KiB, then all three present. */
export function checkCaps(history?: string, proof?: string, certs?: string): asserts history is string {
  for (const [name, value] of [["workflow-history", history], ["workflow-history-proof", proof], ["workflow-history-certs", certs]] as const) {
    if (value !== undefined && value.length > MAX_HEADER_BYTES) throw refuse("header_too_large", undefined, `${name} is over ${MAX_HEADER_BYTES} bytes`);
  }
  if (history === undefined) throw refuse("history_missing", undefined, "no workflow-history header");
  if (proof === undefined) throw refuse("proof_missing", undefined, "no workflow-history-proof header");
  if (certs === undefined) throw refuse("certs_missing", undefined, "no workflow-history-certs header");
}

/** Step 3. */
export function checkEntryCount(n: number): void {
  if (n > MAX_ENTRIES) throw refuse("history_too_large", undefined, `${n} entries, at most ${MAX_ENTRIES}`);
}

export function checkCertCount(n: number): void {
  if (n > MAX_CERTS) throw refuse("certs_too_many", undefined, `${n} certificates, at most ${MAX_CERTS}`);
}

/** Step 4 over the `workflow-history-certs` parts: the count, then each one non-empty, canonical base64url, X.509. */
export function decodeCerts(texts: readonly string[]): Uint8Array[] {
  checkCertCount(texts.length);
  return texts.map((text, i) => {
    const part = certPart(i);
    if (!text) throw refuse("cert_malformed", part, "empty");
    const der = b64(text, part, "certificate");
    loadCert(der, i);
    return der;
  });
}

/**
 * An X.509 certificate as OpenSSL reads it. (OpenSSL tolerates some non-DER
 * forms the verifier refuses, §6.1: those are the server's to refuse.)
 */
export function loadCert(der: Uint8Array, i: number): X509Certificate {
  try {
    return new X509Certificate(Buffer.from(der));
  } catch (e) {
    throw refuse("cert_malformed", certPart(i), (e as Error).message);
  }
}

export function certsByX5t(ders: Iterable<Uint8Array>): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const d of ders) {
    const k = sha256B64u(d);
    if (!out.has(k)) out.set(k, d);
  }
  return out;
}

// --- steps 5.1 to 5.5: a compact JWS ----------------------------------------

/** A compact JWS whose form passed steps 5.1 to 5.5 (not yet verified). */
export interface Signed {
  compact: string;
  x5t: string;
  payload: JsonObject;
}

export function parseJws(compact: string, part: Part): Signed {
  if (!compact) throw refuse(part.malformed, part, "empty");
  const segments = compact.split(".");
  if (segments.length !== 3) throw refuse(part.malformed, part, "not three dot-separated segments");
  const [h, p, s] = segments as [string, string, string];
  const header = readObject(b64(h, part, "JWS header"), part, "JWS header");
  if (header.alg !== ALG) throw refuse("signature_alg", part, `alg is not ${ALG}`);
  if (header.typ !== part.typ) throw refuse("header_typ", part, `typ is not ${part.typ}`);
  if (Object.keys(header).length !== 3 || !Object.hasOwn(header, X5T)) {
    throw refuse("header_members", part, `the JWS header is not exactly alg, typ, ${X5T}`);
  }
  const x5t = header[X5T];
  hash32(x5t, part, X5T);
  const payload = readObject(b64(p, part, "payload"), part, "payload");
  const sig = b64(s, part, "signature");
  if (sig.byteLength !== 64) throw refuse("signature_format", part, `signature of ${sig.byteLength} bytes, not 64`);
  const r = bytesToBigInt(sig.subarray(0, 32));
  const sv = bytesToBigInt(sig.subarray(32));
  if (r < 1n || r >= P256_N || sv < 1n || sv >= P256_N) throw refuse("signature_range", part, "r or s is 0 or not below n");
  if (sv > P256_HALF_N) throw refuse("signature_high_s", part, "high-S signature");
  return { compact, x5t: x5t as string, payload };
}

// --- steps 5.6 and 5.7: payload members --------------------------------------

/** Reads members one at a time, each completely before the next. */
class Fields {
  constructor(
    private readonly payload: JsonObject,
    private readonly part: Part,
    known: readonly string[],
  ) {
    if (this.int("v") !== 1) throw refuse("version_unsupported", part, "v is not 1");
    const unknown = Object.keys(payload)
      .filter((k) => !known.includes(k))
      .sort();
    if (unknown.length > 0) throw refuse("unknown_member", part, `unknown member ${JSON.stringify(unknown[0])}`);
  }

  get(member: string): unknown {
    if (!Object.hasOwn(this.payload, member)) throw refuse("missing_member", this.part, `no ${member}`);
    return this.payload[member];
  }

  /** An integer written without sign, fraction or exponent, at most 2^53 − 1. */
  int(member: string): number {
    const v = this.get(member);
    if (typeof v !== "number" || !spelledAsInteger(this.payload, member) || v > MAX_SAFE_INTEGER) {
      throw refuse("member_type", this.part, `${member} is not an integer in 0..2^53-1`);
    }
    return v;
  }

  string(member: string, nonempty = false): string {
    const v = this.get(member);
    if (typeof v !== "string" || (nonempty && !v)) throw refuse("member_type", this.part, `${member} is not a ${nonempty ? "non-empty " : ""}string`);
    return v;
  }

  spiffe(member: string): string {
    const v = this.string(member);
    if (!isSpiffeId(v)) throw refuse("member_spiffe_id", this.part, `${member} is not a SPIFFE ID`);
    return v;
  }

  hash(member: string): Uint8Array {
    return hash32(this.get(member), this.part, member);
  }
}

export interface EntryFields {
  wid: string;
  seq: number;
  prev: Uint8Array | null;
  iss: string;
  nxt: string;
  step: string;
  result: string;
  iat: number;
  exp: number;
  claims: JsonObject;
}

/** Steps 5.6 and 5.7 of an entry. */
export function entryFields(payload: JsonObject, part: Part): EntryFields {
  const f = new Fields(payload, part, ENTRY_MEMBERS);
  const wid = f.string("wid", true);
  const seq = f.int("seq");
  const prev = f.get("prev") === null ? null : f.hash("prev");
  const iss = f.spiffe("iss");
  const nxt = f.spiffe("nxt");
  const step = f.string("step", true);
  const result = f.string("result");
  const iat = f.int("iat");
  const exp = f.int("exp");
  const claims = Object.hasOwn(payload, "claims") ? payload.claims : {};
  if (claims === null || typeof claims !== "object" || Array.isArray(claims)) throw refuse("member_type", part, "claims is not an object");
  let size: number;
  try {
    jcs.checkSafeNumbers(claims);
    size = utf8(jcs.canonical(claims)).byteLength;
  } catch (e) {
    if (e instanceof jcs.JcsError) throw refuse("member_type", part, `claims: ${e.message}`);
    throw e;
  }
  if (size > MAX_CLAIMS_BYTES) throw refuse("claims_too_large", part, `claims of ${size} bytes as RFC 8785, at most ${MAX_CLAIMS_BYTES}`);
  return { wid, seq, prev, iss, nxt, step, result, iat, exp, claims: claims as JsonObject };
}

export interface ProofFields {
  iss: string;
  aud: string;
  wid: string;
  head: Uint8Array;
  len: number;
  bdy: Uint8Array;
  iat: number;
  exp: number;
  jti: string;
}

/** Step 6's members, in the order `v`, unknown, `iss` … `jti`. */
export function proofFields(payload: JsonObject): ProofFields {
  const part = PROOF;
  const f = new Fields(payload, part, PROOF_MEMBERS);
  const iss = f.spiffe("iss");
  const aud = f.string("aud", true);
  const wid = f.string("wid", true);
  const head = f.hash("head");
  const len = f.int("len");
  const bdy = f.hash("bdy");
  const iat = f.int("iat");
  const exp = f.int("exp");
  const jti = f.string("jti");
  // Counted in UTF-8 bytes, as the Rust verifier counts (the same for the ASCII a jti must be).
  if (Buffer.byteLength(jti, "utf8") > MAX_JTI_CHARS) throw refuse("member_type", part, `jti over ${MAX_JTI_CHARS} characters`);
  if (b64(jti, part, "jti").byteLength < 16) throw refuse("proof_jti", part, "jti under 16 bytes");
  return { iss, aud, wid, head, len, bdy, iat, exp, jti };
}

// --- steps 5.8 to 5.10: the signer (the part that needs no trust bundle) ----

/**
 * True when `jws` carries a valid ES256 signature (64-byte `r || s`, r and s
 * in [1, n−1], low-S) by the P-256 key of `cert` (object or DER). Checks only
 * the signature, not the certificate.
 */
export function verifySignature(jws: string, cert: X509Certificate | Uint8Array): boolean {
  const key = (cert instanceof X509Certificate ? cert : new X509Certificate(Buffer.from(cert))).publicKey;
  if (!isP256(key)) return false;
  const dot = jws.lastIndexOf(".");
  if (dot < 0 || !/^[\x21-\x7e]*$/.test(jws)) return false;
  let sig: Uint8Array;
  try {
    sig = b64uDecode(jws.slice(dot + 1));
  } catch {
    return false;
  }
  if (sig.byteLength !== 64) return false;
  const r = bytesToBigInt(sig.subarray(0, 32));
  const s = bytesToBigInt(sig.subarray(32));
  if (r < 1n || r >= P256_N || s < 1n || s > P256_HALF_N) return false;
  return cryptoVerify("sha256", utf8(jws.slice(0, dot)), { key, dsaEncoding: "ieee-p1363" }, sig);
}

export function checkSigner(jws: Signed, iss: string, certs: Map<string, Uint8Array>, part: Part): void {
  const der = certs.get(jws.x5t);
  if (der === undefined) throw refuse("cert_missing", part, `no certificate with its ${X5T} was sent`);
  const cert = new X509Certificate(Buffer.from(der)); // read in step 4
  let signer: string;
  try {
    signer = spiffeIdOf(cert);
  } catch (e) {
    if (e instanceof SvidError) throw refuse("cert_spiffe_id", part, e.message);
    throw e;
  }
  if (!isP256(cert.publicKey)) throw refuse("cert_key_type", part, "the signer's key is not ECDSA P-256");
  if (iss !== signer) throw refuse("signer_mismatch", part, `iss is not the certificate's SPIFFE ID ${signer}`);
  if (!verifySignature(jws.compact, cert)) throw refuse("signature_invalid", part, "the signature does not verify");
}

export type CheckedEntry = [EntryFields, Uint8Array];

/** Step 5 for entry `i`: its fields and its hash. */
export function checkEntry(compact: string, i: number, certs: Map<string, Uint8Array>): CheckedEntry {
  const part = entryPart(i);
  const jws = parseJws(compact, part);
  const fields = entryFields(jws.payload, part);
  checkSigner(jws, fields.iss, certs, part);
  return [fields, sha256(compact)];
}

/** Step 6. */
export function checkProofJws(compact: string, certs: Map<string, Uint8Array>): ProofFields {
  const jws = parseJws(compact, PROOF);
  const fields = proofFields(jws.payload);
  checkSigner(jws, fields.iss, certs, PROOF);
  return fields;
}

// --- steps 7 and 8 ------------------------------------------------------------

/** Step 7: links, custody and order (no skew between signed times), then each entry's times against now (with skew). */
export function checkChain(entries: readonly CheckedEntry[], now: number): void {
  entries.forEach(([e], i) => {
    const part = entryPart(i);
    if (e.seq !== i) throw refuse("chain_seq", part, `seq is ${e.seq}`);
    const want = i === 0 ? null : entries[i - 1]![1];
    if (want === null ? e.prev !== null : e.prev === null || !bytesEqual(e.prev, want)) {
      throw refuse("chain_prev", part, "prev does not link to the previous entry");
    }
    if (i > 0) {
      const before = entries[i - 1]![0];
      if (e.wid !== entries[0]![0].wid) throw refuse("chain_wid", part, "from another workflow");
      if (e.iss !== before.nxt) throw refuse("chain_custody", part, "not signed by the holder the previous entry named");
      if (e.iat < before.iat) throw refuse("chain_order", part, "issued before the previous entry");
    }
    if (e.exp < e.iat) throw refuse("entry_lifetime", part, "exp is before iat");
    if (e.iat > now + CLOCK_SKEW) throw refuse("entry_future", part, "issued in the future");
    if (e.exp < now - CLOCK_SKEW) throw refuse("entry_expired", part, "expired");
  });
}

/** What the server sees besides the headers; each binding is checked when given. */
export interface CheckContext {
  /** Unix seconds; default now. */
  now?: number;
  /** The SPIFFE ID of the mTLS client certificate; default the proof's own `iss` (so `proof_holder` still checks that the prover holds the chain). */
  peer?: string;
  /** This server's audience (`proof_audience`). */
  audience?: string;
  /** The exact request body (`proof_body`); a string is UTF-8. */
  body?: Uint8Array | string;
}

/** Step 8. */
export function checkBindings(p: ProofFields, entries: readonly CheckedEntry[], ctx: CheckContext & { now: number }): void {
  const [last, lastHash] = entries[entries.length - 1]!;
  const { now, peer, audience, body } = ctx;
  if (peer !== undefined && p.iss !== peer) throw refuse("proof_signer", PROOF, "iss is not the mTLS peer");
  if ((peer ?? p.iss) !== last.nxt) throw refuse("proof_holder", PROOF, "the caller is not the holder the last entry named");
  if (audience !== undefined && p.aud !== audience) throw refuse("proof_audience", PROOF, "aud is not this server's audience");
  if (p.wid !== entries[0]![0].wid) throw refuse("proof_wid", PROOF, "wid is not the chain's");
  if (p.len !== entries.length) throw refuse("proof_len", PROOF, "len is not the number of entries");
  if (!bytesEqual(p.head, lastHash)) throw refuse("proof_head", PROOF, "head is not the last entry's hash");
  if (body !== undefined && !bytesEqual(p.bdy, sha256(typeof body === "string" ? utf8(body) : body))) {
    throw refuse("proof_body", PROOF, "bdy is not the body's hash");
  }
  if (p.iat > now + CLOCK_SKEW) throw refuse("proof_not_yet_valid", PROOF, "issued in the future");
  if (p.exp < now - CLOCK_SKEW) throw refuse("proof_expired", PROOF, "expired");
  if (p.exp < p.iat || p.exp - p.iat > MAX_PROOF_TTL) throw refuse("proof_lifetime", PROOF, `lifetime is not 0..${MAX_PROOF_TTL} s`);
}

/** Steps 1 to 8 over the three header values (the host's step 0 is the caller's). */
export function checkRequest(history: string | undefined, proof: string | undefined, certs: string | undefined, ctx: CheckContext & { now: number }): void {
  checkCaps(history, proof, certs);
  const raw = history.split("~");
  checkEntryCount(raw.length);
  const byX5t = certsByX5t(decodeCerts(certs!.split("~")));
  const entries = raw.map((text, i) => checkEntry(text, i, byX5t));
  const p = checkProofJws(proof!, byX5t);
  checkChain(entries, ctx.now);
  checkBindings(p, entries, ctx);
}
