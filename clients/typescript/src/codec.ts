/**
 * Byte-exact encodings of docs/history-format.md §2: canonical unpadded
 * base64url, SHA-256 hashes, compact JSON with sorted members (strict JSON
 * reading is `json.ts`, RFC 8785 is `jcs.ts`), and SPIFFE IDs (§9).
 */

import { createHash } from "node:crypto";

/** A value is not canonical unpadded base64url or not the expected JSON. */
export class EncodingError extends Error {
  override name = "EncodingError";
}

const B64U = /^[A-Za-z0-9_-]*$/;

/** Canonical unpadded base64url (RFC 4648 §5). */
export function b64u(data: Uint8Array | string): string {
  const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return bytes.toString("base64url");
}

/**
 * Decodes canonical unpadded base64url; anything else (padding, `+`, `/`,
 * whitespace, non-zero trailing bits) throws `EncodingError`.
 */
export function b64uDecode(text: string): Uint8Array {
  if (typeof text !== "string" || !B64U.test(text) || text.length % 4 === 1) {
    throw new EncodingError("not canonical base64url");
  }
  const data = Buffer.from(text, "base64url");
  if (data.toString("base64url") !== text) {
    throw new EncodingError("not canonical base64url (non-zero trailing bits)");
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

export function sha256(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

/** base64url(SHA-256(data)): `x5t#S256`, `prev`, `head`, `bdy`. Strings are hashed as UTF-8. */
export function sha256B64u(data: Uint8Array | string): string {
  return b64u(sha256(data));
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}

/** Code point order (= UTF-8 byte order), as Rust's BTreeMap and Python's sort_keys sort. */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done === y.done ? 0 : x.done ? -1 : 1;
    const cx = x.value.codePointAt(0)!;
    const cy = y.value.codePointAt(0)!;
    if (cx !== cy) return cx - cy;
  }
}

function write(value: unknown, out: string[]): void {
  if (value === null) {
    out.push("null");
  } else if (typeof value === "string" || typeof value === "boolean") {
    out.push(JSON.stringify(value));
  } else if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new EncodingError("JSON cannot hold NaN or Infinity");
    out.push(JSON.stringify(value));
  } else if (typeof value === "bigint") {
    out.push(value.toString());
  } else if (Array.isArray(value)) {
    out.push("[");
    value.forEach((v, i) => {
      if (i) out.push(",");
      write(v, out);
    });
    out.push("]");
  } else if (typeof value === "object") {
    const keys = Object.keys(value as object).sort(compareCodePoints);
    out.push("{");
    let first = true;
    for (const k of keys) {
      const v = (value as Record<string, unknown>)[k];
      if (v === undefined) continue;
      if (!first) out.push(",");
      first = false;
      out.push(JSON.stringify(k), ":");
      write(v, out);
    }
    out.push("}");
  } else {
    throw new EncodingError(`a ${typeof value} is not JSON`);
  }
}

/**
 * Compact JSON, object members in lexicographic (code point) order, as UTF-8:
 * the form the reference signer writes (the `claims` size is measured as
 * RFC 8785, `jcs.ts`). Members whose value is `undefined` are omitted;
 * `bigint`s are written as integers.
 */
export function canonicalJson(value: unknown): Uint8Array {
  const out: string[] = [];
  write(value, out);
  return utf8(out.join(""));
}

const SPIFFE_ID = /^spiffe:\/\/([a-z0-9._-]+)((?:\/[A-Za-z0-9._-]+)*)$/;

/** A SPIFFE ID as in docs/history-format.md §9 (`requirePath`: at least one path segment). */
export function isSpiffeId(value: unknown, opts: { requirePath?: boolean } = {}): value is string {
  if (typeof value !== "string" || utf8(value).byteLength > 2048) return false;
  const m = SPIFFE_ID.exec(value);
  if (!m || m[1]!.length > 255) return false;
  const segments = m[2] ? m[2].slice(1).split("/") : [];
  if (segments.some((s) => s === "." || s === "..")) return false;
  return segments.length > 0 || !opts.requirePath;
}
