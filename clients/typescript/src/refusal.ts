/**
 * Reading Custody's refusals (docs/replies.md) out of MCP SDK errors.
 *
 * A refused request gets HTTP 4xx/5xx with a JSON-RPC error body
 * `{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…,"data":{"reason":…,"decision_id":…}}}`.
 * The TypeScript MCP SDK (1.x) raises a non-2xx reply as a `StreamableHTTPError`
 * whose message embeds the body text, not as an `McpError` with `data`; this
 * recovers the JSON-RPC error from either.
 */

/** A Custody refusal: the JSON-RPC error of the reply. */
export interface CustodyRefusal {
  /** The HTTP status, when the SDK reported one (`StreamableHTTPError.code`). */
  status?: number;
  code: number;
  message: string;
  data: { reason: string; decision_id?: string; [member: string]: unknown };
}

function asRefusal(error: unknown, status?: number): CustodyRefusal | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const e = error as { code?: unknown; message?: unknown; data?: unknown };
  const data = e.data as { reason?: unknown } | undefined;
  if (typeof e.code !== "number" || typeof data !== "object" || data === null || typeof data.reason !== "string") return undefined;
  return { ...(status !== undefined ? { status } : {}), code: e.code, message: String(e.message ?? ""), data: data as CustodyRefusal["data"] };
}

/**
 * The Custody refusal carried by `err` (an `McpError` with `data.reason`, or a
 * `StreamableHTTPError` whose message holds the JSON-RPC error body; causes are
 * followed), else `undefined`.
 */
export function custodyRefusal(err: unknown): CustodyRefusal | undefined {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const direct = asRefusal(e);
    if (direct) return direct;
    const message = (e as { message?: unknown }).message;
    if (typeof message === "string") {
      // The body is the JSON text at the end of the message: try each `{` from the left.
      for (let i = message.indexOf("{"), tries = 0; i >= 0 && tries < 16; i = message.indexOf("{", i + 1), tries++) {
        let body: { error?: unknown };
        try {
          body = JSON.parse(message.slice(i)) as { error?: unknown };
        } catch {
          continue;
        }
        const code = (e as { code?: unknown }).code;
        const found = asRefusal(body?.error, typeof code === "number" ? code : undefined);
        if (found) return found;
        break;
      }
    }
  }
  return undefined;
}
