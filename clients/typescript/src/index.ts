/**
 * Custody client: signed workflow history (docs/history-format.md) for MCP
 * calls through the Custody Envoy filter.
 *
 *     const svid = Svid.fromFiles("svid.pem", "svid.key");
 *     const h = new History().append(svid, { step: "fraud_check_passed", next: "spiffe://example.org/ns/payments/sa/approvals" });
 *     const headers = prove(h, svid, { audience: "spiffe://example.org/ns/payments/sa/refund-tool", body: "..." });
 */

export { CALL_CLAIM, CallError, argsSha256, callClaim, canonical } from "./call.js";
export { EncodingError, b64u, b64uDecode, canonicalJson, isSpiffeId, sha256B64u } from "./codec.js";
export { DuplicateMember, JsonError, parseJson, strictJsonObject, type JsonObject } from "./json.js";
export {
  CLOCK_SKEW,
  MAX_CERTS,
  MAX_CLAIMS_BYTES,
  MAX_ENTRIES,
  MAX_HEADER_BYTES,
  MAX_PROOF_TTL,
  CERTS_HEADER,
  HISTORY_HEADER,
  PROOF_HEADER,
  Entry,
  History,
  HistoryError,
  Jws,
  NotHolderError,
  VerificationError,
  checkProof,
  parseProof,
  prove,
  signJws,
  verifySignature,
  type AppendOptions,
  type CheckContext,
  type HeadersLike,
  type ProveOptions,
} from "./history.js";
export { custodyFetch, mtlsAgent, type CustodyFetch, type CustodyFetchOptions, type HistorySource } from "./fetch.js";
export { custodyRefusal, type CustodyRefusal } from "./refusal.js";
export { P256_N, Svid, SvidError, es256Sign, spiffeIdOf } from "./svid.js";

export const VERSION = "0.1.0";
