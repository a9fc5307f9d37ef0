/**
 * Signed workflow history (docs/history-format.md): entries, appending,
 * per-request proofs, and the holder's check (`check.ts`: §7 without the
 * trust bundle).
 */

import { randomBytes, X509Certificate } from "node:crypto";

import { CALL_CLAIM, callClaim } from "./call.js";
import * as check from "./check.js";
import { ALG, ENTRY_TYP, MAX_CERTS, MAX_ENTRIES, MAX_HEADER_BYTES, MAX_PROOF_TTL, PROOF_TYP, X5T, type CheckContext, type Part } from "./check.js";
import { b64u, b64uDecode, bytesEqual, canonicalJson, EncodingError, isSpiffeId, sha256B64u, utf8 } from "./codec.js";
import { HistoryError, NotHolderError, VerificationError } from "./errors.js";
import { strictJsonObject, type JsonObject } from "./json.js";
import type { Svid } from "./svid.js";

export { CLOCK_SKEW, MAX_CERTS, MAX_CLAIMS_BYTES, MAX_ENTRIES, MAX_HEADER_BYTES, MAX_PROOF_TTL, verifySignature, type CheckContext } from "./check.js";
export { HistoryError, NotHolderError, VerificationError } from "./errors.js";

export const HISTORY_HEADER = "workflow-history";
export const PROOF_HEADER = "workflow-history-proof";
export const CERTS_HEADER = "workflow-history-certs";

/**
 * Header values by name: a plain object (e.g. a parsed `custody history` file),
 * a `Headers` or `Map`, or name/value pairs. Names are case-insensitive.
 */
export type HeadersLike =
  | Readonly<Record<string, string>>
  | Iterable<readonly [string, string]>
  | { forEach(cb: (value: string, name: string) => void): void }
  | object;

function headerPairs(headers: HeadersLike): Array<readonly [string, unknown]> {
  if (typeof (headers as { forEach?: unknown }).forEach === "function" && !Array.isArray(headers)) {
    const out: Array<[string, unknown]> = [];
    (headers as { forEach(cb: (value: unknown, name: string) => void): void }).forEach((v, k) => out.push([k, v]));
    return out;
  }
  if (Symbol.iterator in headers) return [...(headers as Iterable<readonly [string, unknown]>)];
  return Object.entries(headers);
}

function header(headers: HeadersLike, name: string): string | undefined {
  const found = headerPairs(headers).filter(([k]) => String(k).toLowerCase() === name);
  if (found.length > 1) throw new HistoryError(`header ${name} given more than once`);
  const v = found[0]?.[1];
  if (v !== undefined && typeof v !== "string") throw new HistoryError(`header ${name} is not a string`);
  return v;
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function headerJson(svid: Svid, typ: string): Uint8Array {
  return canonicalJson({ alg: ALG, typ, [X5T]: svid.x5t });
}

/** A compact JWS of these exact header and payload bytes, ES256, low-S. */
export function signJws(svid: Svid, headerJsonBytes: Uint8Array, payloadJsonBytes: Uint8Array): string {
  const signingInput = `${b64u(headerJsonBytes)}.${b64u(payloadJsonBytes)}`;
  return `${signingInput}.${b64u(svid.sign(utf8(signingInput)))}`;
}

/** One compact JWS, decoded (not verified). */
export class Jws {
  readonly compact: string;
  readonly header: JsonObject;
  readonly payload: JsonObject;
  readonly signature: Uint8Array;

  constructor(compact: string) {
    const parts = compact.split(".");
    if (parts.length !== 3 || !parts[0] || !parts[1]) throw new HistoryError("not a three-segment compact JWS");
    try {
      this.header = strictJsonObject(b64uDecode(parts[0]));
      this.payload = strictJsonObject(b64uDecode(parts[1]));
      this.signature = b64uDecode(parts[2]!);
    } catch (e) {
      if (e instanceof EncodingError) throw new HistoryError(`bad JWS: ${e.message}`);
      throw e;
    }
    this.compact = compact;
  }

  static parse(compact: string): Jws {
    return new Jws(compact);
  }

  /** The ASCII bytes the signature covers: `header.payload` exactly as sent. */
  get signingInput(): Uint8Array {
    return utf8(this.compact.slice(0, this.compact.lastIndexOf(".")));
  }

  /** base64url(SHA-256(compact JWS text)): the next entry's `prev`, a proof's `head`. */
  get sha256(): string {
    return sha256B64u(this.compact);
  }

  get x5t(): string {
    const v = this.header[X5T];
    return typeof v === "string" ? v : "";
  }
}

/** One history entry (§3). */
export class Entry extends Jws {
  static override parse(compact: string): Entry {
    return new Entry(compact);
  }
  get v(): number {
    return this.payload.v as number;
  }
  get wid(): string {
    return String(this.payload.wid);
  }
  get seq(): number {
    return this.payload.seq as number;
  }
  get prev(): string | null {
    const p = this.payload.prev;
    return p === null || p === undefined ? null : String(p);
  }
  get iss(): string {
    return String(this.payload.iss);
  }
  get nxt(): string {
    return String(this.payload.nxt);
  }
  get step(): string {
    return String(this.payload.step);
  }
  get result(): string {
    return String(this.payload.result);
  }
  get iat(): number {
    return this.payload.iat as number;
  }
  get exp(): number {
    return this.payload.exp as number;
  }
  get claims(): JsonObject | undefined {
    const c = this.payload.claims;
    return c !== null && typeof c === "object" && !Array.isArray(c) ? (c as JsonObject) : undefined;
  }
}

/** Options of `History.append`. */
export interface AppendOptions {
  /** What happened (non-empty). */
  step: string;
  /** Its outcome; default `approved`. */
  result?: string;
  /** The SPIFFE ID of the next holder: the next signer, or the caller that proves. */
  next: string;
  /** Optional JSON object read by policy, at most 2 KiB as compact JSON. */
  claims?: JsonObject;
  /** Lifetime in seconds; default 3600. */
  ttl?: number;
  /** Workflow id: for a new chain (default 128 random bits), or checked against the chain's. */
  wid?: string;
  /** Issued at, Unix seconds; default now. */
  iat?: number;
  /** Bind the entry to exactly this call (a JSON-RPC request or `{name, arguments}`): adds `claims.call`. */
  bindCall?: JsonObject;
}

/**
 * A workflow history: entries (compact JWS texts, oldest first) and the DER
 * certificates that go in `workflow-history-certs`. Immutable: `append`
 * returns a new value.
 */
export class History implements Iterable<Entry> {
  readonly entries: readonly string[];
  readonly certs: readonly Uint8Array[];

  constructor(entries: readonly string[] = [], certs: readonly Uint8Array[] = []) {
    this.entries = Object.freeze([...entries]);
    this.certs = Object.freeze(certs.map((c) => new Uint8Array(c)));
    Object.freeze(this);
  }

  /**
   * From the `workflow-history` and `workflow-history-certs` header values
   * (names case-insensitive; other headers, the proof included, ignored).
   * Headers without `workflow-history` give the empty history.
   */
  static parse(headers: HeadersLike): History {
    const text = header(headers, HISTORY_HEADER);
    const certsText = header(headers, CERTS_HEADER);
    let entries: string[] = [];
    if (text !== undefined) {
      entries = text.split("~");
      if (entries.length > MAX_ENTRIES) throw new HistoryError(`more than ${MAX_ENTRIES} entries`);
      entries.forEach((e, i) => {
        try {
          Entry.parse(e);
        } catch (err) {
          throw new HistoryError(`entry ${i}: ${(err as Error).message}`);
        }
      });
    }
    const certs: Uint8Array[] = [];
    if (certsText) {
      certsText.split("~").forEach((c, i) => {
        try {
          const der = b64uDecode(c);
          new X509Certificate(Buffer.from(der));
          certs.push(der);
        } catch (err) {
          throw new HistoryError(`certificate ${i}: ${(err as Error).message}`);
        }
      });
    }
    return new History(entries, certs);
  }

  /** `{"workflow-history": …, "workflow-history-certs": …}`; `{}` when empty. (The same JSON object is a `custody history` file.) */
  headers(): Record<string, string> {
    if (this.entries.length === 0) return {};
    return { [HISTORY_HEADER]: this.entries.join("~"), [CERTS_HEADER]: this.certs.map((c) => b64u(c)).join("~") };
  }

  get length(): number {
    return this.entries.length;
  }

  *[Symbol.iterator](): Iterator<Entry> {
    for (const e of this.entries) yield Entry.parse(e);
  }

  /** Entry `i` (negative counts from the end). */
  at(i: number): Entry | undefined {
    const e = this.entries.at(i);
    return e === undefined ? undefined : Entry.parse(e);
  }

  get last(): Entry | undefined {
    return this.at(-1);
  }

  get wid(): string | undefined {
    return this.at(0)?.wid;
  }

  /** The SPIFFE ID the last entry handed the chain to (its `nxt`). */
  get holder(): string | undefined {
    return this.last?.nxt;
  }

  /** Adds certificates not already present (compared by DER). */
  withCerts(ders: Iterable<Uint8Array>): History {
    const certs = [...this.certs];
    for (const d of ders) if (!certs.some((c) => bytesEqual(c, d))) certs.push(d);
    return new History(this.entries, certs);
  }

  /**
   * Signs one entry by `svid` handing the chain to `next` and returns the
   * longer history. An empty history starts a chain (`seq` 0, `wid` given or
   * 128 random bits). Otherwise `seq`/`prev`/`wid` follow the last entry, and
   * the signer must be the holder it named (else `NotHolderError`).
   */
  append(svid: Svid, opts: AppendOptions): History {
    const { step, result = "approved", next, ttl = 3600 } = opts;
    let claims = opts.claims;
    if (opts.bindCall !== undefined) {
      if (claims !== undefined && CALL_CLAIM in claims) throw new HistoryError("claims already has a `call` member; bindCall sets it");
      let call: Record<string, string>;
      try {
        call = callClaim(opts.bindCall);
      } catch (e) {
        throw new HistoryError(`bindCall: ${(e as Error).message}`);
      }
      claims = { ...(claims ?? {}), [CALL_CLAIM]: call };
    }
    let wid = opts.wid;
    if (typeof step !== "string" || !step) throw new HistoryError("step must be a non-empty string");
    if (typeof result !== "string") throw new HistoryError("result must be a string");
    if (!isSpiffeId(next)) throw new HistoryError(`next holder ${JSON.stringify(next)} is not a SPIFFE ID`);
    if (!Number.isSafeInteger(ttl) || ttl < 0) throw new HistoryError("ttl must be a non-negative integer");
    if (this.entries.length >= MAX_ENTRIES) throw new HistoryError(`a history holds at most ${MAX_ENTRIES} entries`);
    const iss = svid.spiffeId;
    const last = this.last;
    let seq: number;
    let prev: string | null;
    if (last === undefined) {
      seq = 0;
      prev = null;
      wid = wid ?? b64u(randomBytes(16));
      if (typeof wid !== "string" || !wid) throw new HistoryError("wid must be a non-empty string");
    } else {
      if (wid !== undefined && wid !== last.wid) throw new HistoryError(`wid ${JSON.stringify(wid)} differs from the chain's ${JSON.stringify(last.wid)}`);
      if (last.nxt !== iss) throw new NotHolderError(`${iss} is not the holder the last entry named (${last.nxt})`);
      seq = last.seq + 1;
      prev = last.sha256;
      wid = last.wid;
    }
    const iat = opts.iat ?? nowSeconds();
    if (!Number.isSafeInteger(iat) || iat < 0) throw new HistoryError("iat must be a non-negative integer");
    const payload: JsonObject = { v: 1, wid, seq, prev, iss, nxt: next, step, result, iat, exp: iat + ttl };
    if (claims !== undefined) {
      if (claims === null || typeof claims !== "object" || Array.isArray(claims)) throw new HistoryError("claims must be a JSON object");
      payload.claims = claims;
    }
    const part = check.entryPart(seq);
    const payloadJson = asTheVerifierReads(payload, (p) => check.entryFields(p, part), part);
    const entry = signJws(svid, headerJson(svid, ENTRY_TYP), payloadJson);
    const out = new History([...this.entries, entry], this.certs).withCerts(svid.chainDer);
    withinCaps(out.entries, out.certs);
    return out;
  }

  /**
   * The checks of docs/history-format.md §7 a holder can run on the entries
   * without the trust bundle, in the verifier's order: entry count,
   * certificates (count, X.509), then each entry (JWS form, header, payload
   * members, claims size, the sent certificate its `x5t#S256` names, `iss` =
   * its SPIFFE ID, the signature), then the chain (`seq`, `prev`, `wid`,
   * custody, order, lifetimes, times against `now` with 30 s skew). Throws
   * `VerificationError` with the verifier's reason code. It does NOT judge
   * certificates against a trust bundle: only the server (or `custody
   * history verify`) decides trust.
   */
  check(opts: { now?: number } = {}): void {
    const now = opts.now ?? nowSeconds();
    check.checkEntryCount(this.entries.length);
    check.checkCertCount(this.certs.length);
    this.certs.forEach((der, i) => check.loadCert(der, i));
    const byX5t = check.certsByX5t(this.certs);
    const entries = this.entries.map((text, i) => check.checkEntry(text, i, byX5t));
    check.checkChain(entries, now);
  }
}

/**
 * The payload's JSON, once the verifier's rules (§2 JSON, §3/§4 members,
 * claims as RFC 8785) pass on those very bytes: a signer never produces what
 * the verifier refuses.
 */
function asTheVerifierReads(payload: JsonObject, rules: (p: JsonObject) => unknown, part: Part): Uint8Array {
  let data: Uint8Array;
  try {
    data = canonicalJson(payload);
  } catch (e) {
    throw new HistoryError(`${part.what}: the payload is not JSON: ${(e as Error).message}`);
  }
  try {
    rules(check.readObject(data, part, "payload"));
  } catch (e) {
    if (e instanceof VerificationError) throw new HistoryError(`the verifier would refuse this (${e.reason}): ${e.detail}`);
    throw e;
  }
  return data;
}

/** Refuses headers the verifier refuses for their size (§8). */
function withinCaps(entries: readonly string[], certs: readonly Uint8Array[], proof = ""): void {
  if (certs.length > MAX_CERTS) throw new HistoryError(`more than ${MAX_CERTS} certificates in ${CERTS_HEADER}`);
  const sizes: Array<[string, number]> = [
    [HISTORY_HEADER, entries.reduce((n, e) => n + e.length, 0) + entries.length - 1],
    [PROOF_HEADER, proof.length],
    [CERTS_HEADER, certs.reduce((n, c) => n + b64u(c).length, 0) + certs.length - 1],
  ];
  for (const [name, size] of sizes) {
    if (size > MAX_HEADER_BYTES) throw new HistoryError(`${name} would be ${size} bytes, over ${MAX_HEADER_BYTES}`);
  }
}

/** Options of `prove`. */
export interface ProveOptions {
  /** The tool server's audience (its SPIFFE ID, from its config). */
  audience: string;
  /** The exact request body bytes (a string is taken as UTF-8). */
  body: Uint8Array | string;
  /** Proof lifetime in seconds, 0..60; default 60. */
  ttl?: number;
  /** Issued at, Unix seconds; default now. */
  now?: number;
  /** The proof id, at least 16 bytes; default 16 fresh random bytes. */
  jti?: Uint8Array;
  /** Refuse (`NotHolderError`) to prove a chain not handed to `svid`; default true. `false` is for testing refusals. */
  strict?: boolean;
}

/**
 * The three request headers binding `history` to one request with this exact
 * `body`: a fresh proof by `svid` (the caller, which must be the mTLS client
 * certificate) for `audience`. The certificates header gains the caller's
 * certificate (and intermediates) unless already there (compared by DER).
 */
export function prove(history: History, svid: Svid, opts: ProveOptions): Record<string, string> {
  const { audience, body, ttl = 60, strict = true } = opts;
  const last = history.last;
  if (last === undefined) throw new HistoryError("cannot prove an empty history");
  if (typeof audience !== "string" || !audience) throw new HistoryError("audience must be a non-empty string");
  if (!Number.isSafeInteger(ttl) || ttl < 0 || ttl > MAX_PROOF_TTL) throw new HistoryError(`proof ttl must be 0..${MAX_PROOF_TTL} seconds`);
  const iss = svid.spiffeId;
  if (strict && last.nxt !== iss) throw new NotHolderError(`${iss} is not the holder the last entry named (${last.nxt})`);
  const jti = opts.jti ?? new Uint8Array(randomBytes(16));
  if (jti.byteLength < 16) throw new HistoryError("jti needs at least 16 bytes");
  const iat = opts.now ?? nowSeconds();
  if (!Number.isSafeInteger(iat) || iat < 0) throw new HistoryError("now must be a non-negative integer");
  if (typeof body !== "string" && !(body instanceof Uint8Array)) throw new HistoryError("body must be a string or a Uint8Array");
  const payload: JsonObject = {
    v: 1,
    iss,
    aud: audience,
    wid: last.wid,
    head: last.sha256,
    len: history.length,
    bdy: sha256B64u(typeof body === "string" ? utf8(body) : body),
    iat,
    exp: iat + ttl,
    jti: b64u(jti),
  };
  const payloadJson = asTheVerifierReads(payload, check.proofFields, check.PROOF);
  const proof = signJws(svid, headerJson(svid, PROOF_TYP), payloadJson);
  const sent = history.withCerts(svid.chainDer);
  withinCaps(sent.entries, sent.certs, proof);
  return { ...sent.headers(), [PROOF_HEADER]: proof };
}

/** The decoded (unverified) `workflow-history-proof` of `headers`. */
export function parseProof(headers: HeadersLike): Jws {
  const text = header(headers, PROOF_HEADER);
  if (text === undefined) throw new HistoryError("no workflow-history-proof header");
  return Jws.parse(text);
}

const HOST: ReadonlyArray<readonly [string, string]> = [
  [HISTORY_HEADER, "history_malformed"],
  [PROOF_HEADER, "proof_malformed"],
  [CERTS_HEADER, "cert_malformed"],
];

/**
 * Step 0 of §7, per header in order: given twice (names compared
 * case-insensitively) is `header_repeated`, a byte outside 0x21–0x7E is
 * malformed.
 */
function hostStep(headers: HeadersLike): Array<string | undefined> {
  const pairs = headerPairs(headers);
  return HOST.map(([name, malformed]) => {
    const found = pairs.filter(([k]) => String(k).toLowerCase() === name);
    if (found.length > 1) throw new VerificationError("header_repeated", `${name} given more than once`);
    const v = found[0]?.[1];
    if (v !== undefined && (typeof v !== "string" || !/^[\x21-\x7e]*$/.test(v))) {
      throw new VerificationError(malformed, `${name} has a byte outside printable ASCII`);
    }
    return v;
  });
}

/**
 * Every check of docs/history-format.md §7 that needs no trust bundle, in the
 * verifier's order, over the three headers: the headers themselves,
 * certificates, each entry, the proof, the chain, then the proof's bindings.
 * Throws `VerificationError` with the reason code the verifier gives.
 *
 * Give what the server will see to check the bindings too: `peer` (the SPIFFE
 * ID of the mTLS client certificate; default the proof's own `iss`, so
 * `proof_holder` still checks that the prover holds the chain), `audience`
 * (`proof_audience`) and the exact `body` (`proof_body`); `now` defaults to
 * the current time. Not trust validation: see `History.check`.
 */
export function checkProof(headers: HeadersLike, ctx: CheckContext = {}): void {
  const [history, proof, certs] = hostStep(headers);
  check.checkRequest(history, proof, certs, { ...ctx, now: ctx.now ?? nowSeconds() });
}
