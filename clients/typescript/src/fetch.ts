/**
 * A `fetch` for the official MCP TypeScript SDK: mTLS with the SVID (undici
 * `Agent`), and a fresh proof over the exact body bytes of every request.
 */

import { readFileSync } from "node:fs";

import { Agent, fetch as undiciFetch, Headers as UndiciHeaders, type Dispatcher } from "undici";

import { utf8 } from "./codec.js";
import { History, prove } from "./history.js";
import type { Svid } from "./svid.js";

/** A fixed history, or a function returning the current one for each request. */
export type HistorySource = History | (() => History | Promise<History>);

export interface CustodyFetchOptions {
  /** The history to prove on every request (an empty history adds no headers). */
  history: HistorySource;
  /** The tool server's audience (its SPIFFE ID). */
  audience: string;
  /**
   * The authorities to trust for the server certificate: a PEM file path
   * (string or file URL), PEM text (a string starting with `-----BEGIN`), or PEM bytes.
   */
  caBundle: string | URL | Uint8Array;
  /** Proof lifetime in seconds (0..60); default 60. */
  proofTtl?: number;
  /** Further TLS options for the undici `Agent` (e.g. `servername`). */
  connect?: Omit<NonNullable<Agent.Options["connect"]>, "cert" | "key" | "ca"> & Record<string, unknown>;
}

/** A `fetch`-compatible function, with its mTLS dispatcher and a way to close it. */
export type CustodyFetch = ((input: string | URL | Request, init?: RequestInit) => Promise<Response>) & {
  readonly dispatcher: Agent;
  /** Closes the dispatcher's connections. */
  close(): Promise<void>;
};

function readCaBundle(ca: string | URL | Uint8Array): string {
  if (ca instanceof Uint8Array) return Buffer.from(ca).toString("ascii");
  if (typeof ca === "string" && ca.trimStart().startsWith("-----BEGIN")) return ca;
  return readFileSync(ca, "ascii");
}

/**
 * An undici `Agent` that presents `svid` as the TLS client certificate and
 * trusts `caBundle`. TLS session resumption is off (`maxCachedSessions: 0`)
 * unless `connect` says otherwise: Envoy reports a resumed connection's peer
 * certificate as not validated, and Custody then refuses it (`no_identity`).
 */
export function mtlsAgent(svid: Svid, caBundle: string | URL | Uint8Array, connect: CustodyFetchOptions["connect"] = {}): Agent {
  return new Agent({ connect: { maxCachedSessions: 0, ...connect, cert: svid.certChainPem(), key: svid.keyPem(), ca: readCaBundle(caBundle) } });
}

const STREAM_REFUSAL =
  "custodyFetch: cannot sign a streamed body; the proof covers the exact body bytes, so pass a string, Uint8Array, ArrayBuffer, Blob or URLSearchParams";

function isReadableStreamLike(v: unknown): boolean {
  return (
    typeof v === "object" &&
    v !== null &&
    (typeof (v as { getReader?: unknown }).getReader === "function" ||
      typeof (v as { pipe?: unknown }).pipe === "function" ||
      Symbol.asyncIterator in v)
  );
}

/** The exact bytes (or string) to send and sign; sets the content type fetch would. */
async function bodyBytes(body: unknown, headers: UndiciHeaders): Promise<Uint8Array | string | undefined> {
  if (body === undefined || body === null) return undefined;
  if (typeof body === "string") return body;
  if (body instanceof Uint8Array) return body;
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (body instanceof URLSearchParams) {
    if (!headers.has("content-type")) headers.set("content-type", "application/x-www-form-urlencoded;charset=UTF-8");
    return body.toString();
  }
  if (typeof Blob !== "undefined" && body instanceof Blob) {
    if (body.type && !headers.has("content-type")) headers.set("content-type", body.type);
    return new Uint8Array(await body.arrayBuffer());
  }
  if (typeof FormData !== "undefined" && body instanceof FormData) {
    throw new TypeError("custodyFetch: cannot sign a FormData body (its multipart boundary is chosen when sent); encode it yourself and pass the bytes");
  }
  if (isReadableStreamLike(body)) throw new TypeError(STREAM_REFUSAL);
  throw new TypeError(`custodyFetch: unsupported body type ${Object.prototype.toString.call(body)}`);
}

/**
 * A `fetch`-compatible function that connects with mTLS as `svid` (trusting
 * `caBundle`) and adds the three history headers to every request, with a
 * fresh proof by `svid` for `audience` over the exact body bytes sent. Pass
 * it to the MCP SDK: `new StreamableHTTPClientTransport(url, { fetch: custodyFetch(...) })`.
 * Bodies: string, Uint8Array (any ArrayBufferView), ArrayBuffer, Blob,
 * URLSearchParams; streams and FormData are refused with a `TypeError`.
 * Call `.close()` when done.
 */
export function custodyFetch(svid: Svid, opts: CustodyFetchOptions): CustodyFetch {
  const { history, audience, caBundle, proofTtl = 60, connect } = opts;
  if (typeof audience !== "string" || !audience) throw new TypeError("custodyFetch: audience must be a non-empty string");
  const dispatcher = mtlsAgent(svid, caBundle, connect);

  const fn = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const headers = new UndiciHeaders();
    let url: string;
    let method = init.method;
    let body: Uint8Array | string | undefined;
    let signal = init.signal;
    if (typeof input === "string" || input instanceof URL) {
      url = String(input);
    } else {
      url = input.url;
      method ??= input.method;
      signal ??= input.signal;
      input.headers.forEach((v, k) => headers.append(k, v));
      if (init.body === undefined && input.body !== null) body = new Uint8Array(await input.arrayBuffer());
    }
    if (init.headers !== undefined) {
      // As in fetch: headers given in `init` replace a Request's.
      [...headers.keys()].forEach((k) => headers.delete(k));
      new UndiciHeaders(init.headers as ConstructorParameters<typeof UndiciHeaders>[0]).forEach((v, k) => headers.append(k, v));
    }
    if (init.body !== undefined) body = await bodyBytes(init.body, headers);
    const current = typeof history === "function" ? await history() : history;
    if (!(current instanceof History)) throw new TypeError("custodyFetch: history must be a History (or a function returning one)");
    if (current.length > 0) {
      const signed = prove(current, svid, { audience, body: body === undefined ? new Uint8Array(0) : typeof body === "string" ? utf8(body) : body, ttl: proofTtl });
      for (const [k, v] of Object.entries(signed)) headers.set(k, v);
    }
    const { body: _ignored, headers: _h, method: _m, signal: _s, ...rest } = init;
    const res = await undiciFetch(url, {
      ...(rest as Record<string, unknown>),
      ...(method !== undefined ? { method } : {}),
      ...(signal ? { signal: signal as AbortSignal } : {}),
      headers,
      ...(body !== undefined ? { body } : {}),
      dispatcher: dispatcher as Dispatcher,
    });
    return res as unknown as Response;
  };
  return Object.assign(fn, { dispatcher, close: () => dispatcher.close() });
}
