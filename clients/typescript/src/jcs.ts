/**
 * RFC 8785 JSON Canonicalization Scheme (JCS), through the `canonicalize`
 * package: the form a call claim hashes (`call.ts`) and the form an entry's
 * `claims` size is measured in (docs/history-format.md §2). Numbers print as
 * ECMAScript prints doubles (`1E2` and `100.0` are `100`, `-0` is `0`), so the
 * same value has the same bytes whatever spelling was sent.
 */

import canonicalize from "canonicalize";

/** 2^53 − 1: the largest integer every JSON reader holds exactly (I-JSON). */
export const MAX_SAFE_INTEGER = Number.MAX_SAFE_INTEGER;

/** The value has no canonical form that pins one value. */
export class JcsError extends Error {
  override name = "JcsError";
}

/** The RFC 8785 canonical form of `value`. */
export function canonical(value: unknown): string {
  let text: string | undefined;
  try {
    text = canonicalize(value);
  } catch (e) {
    throw new JcsError(`cannot canonicalize: ${(e as Error).message}`);
  }
  if (text === undefined) throw new JcsError("not a JSON value");
  return text;
}

/**
 * Every number of `value` has a magnitude of at most 2^53 − 1: beyond it JCS
 * reads numbers as doubles and no longer pins one value. Iterative: the loop
 * is bounded by the size of `value`.
 */
export function checkSafeNumbers(value: unknown): void {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "number") {
      if (!(Math.abs(v) <= MAX_SAFE_INTEGER)) throw new JcsError("a number's magnitude is above 2^53 - 1");
    } else if (typeof v === "bigint") {
      throw new JcsError("a bigint is not a JSON number here");
    } else if (Array.isArray(v)) {
      stack.push(...v);
    } else if (v !== null && typeof v === "object") {
      stack.push(...Object.values(v));
    }
  }
}
