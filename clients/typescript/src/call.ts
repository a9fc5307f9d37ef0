/**
 * Binding an approval to one call (docs/history-format.md, "Binding an entry
 * to one call"): the call claim a signer puts in `claims.call`, computed
 * exactly as the Custody filter computes it for the request it decides.
 *
 *     const claims = { amount: 12000, call: callClaim({ name: "refund", arguments: { order_id: "o-1", amount: 12000 } }) };
 *
 * RFC 8785 (JCS) comes from the `canonicalize` package (`jcs.ts`).
 */

import { sha256B64u } from "./codec.js";
import * as jcs from "./jcs.js";
import type { JsonObject } from "./json.js";

/** The one member of `claims` that carries the call claim. */
export const CALL_CLAIM = "call";

/** The value cannot be bound to a call claim. */
export class CallError extends Error {
  override name = "CallError";
}

const KEYS: Record<string, [string, string]> = {
  "tools/call": ["tool", "name"],
  "prompts/get": ["prompt", "name"],
  "resources/read": ["resource", "uri"],
};

const isObject = (v: unknown): v is JsonObject => v !== null && typeof v === "object" && !Array.isArray(v);

/** The RFC 8785 canonical form of `value`. */
export function canonical(value: unknown): string {
  try {
    return jcs.canonical(value);
  } catch (e) {
    throw new CallError((e as Error).message);
  }
}

/** base64url SHA-256 of the canonical arguments; `undefined` is `{}`. */
export function argsSha256(args: JsonObject | undefined): string {
  const value = args ?? {};
  try {
    jcs.checkSafeNumbers(value);
  } catch (e) {
    throw new CallError((e as Error).message);
  }
  return sha256B64u(canonical(value));
}

/**
 * The call claim of a JSON-RPC request (`tools/call`, `prompts/get`,
 * `resources/read`) or of `{name: TOOL, arguments: {...}}` (a tool call).
 */
export function callClaim(message: JsonObject): Record<string, string> {
  if (!isObject(message)) throw new CallError("the call must be a JSON object");
  let method: string;
  let params: JsonObject;
  if ("method" in message) {
    if (typeof message.method !== "string" || !(message.method in KEYS)) {
      throw new CallError(`only ${Object.keys(KEYS).join(", ")} requests can be bound to a call`);
    }
    if (!isObject(message.params)) throw new CallError("params must be an object");
    method = message.method;
    params = message.params;
  } else {
    const extra = Object.keys(message).find((k) => k !== "name" && k !== "arguments");
    if (extra !== undefined) throw new CallError(`unknown member ${JSON.stringify(extra)}: give a JSON-RPC request or {name, arguments}`);
    method = "tools/call";
    params = message;
  }
  const [key, member] = KEYS[method]!;
  const target = params[member];
  if (typeof target !== "string" || !target) throw new CallError(`params.${member} must be a non-empty string`);
  const args = params.arguments;
  if (args !== undefined && !isObject(args)) throw new CallError("arguments must be an object");
  return { [key]: target, args_sha256: argsSha256(args) };
}
