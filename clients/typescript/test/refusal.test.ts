/** custodyRefusal: the JSON-RPC error of a Custody refusal, out of the SDK's errors. */

import assert from "node:assert/strict";
import { describe, it } from "node:test";


import { custodyRefusal } from "@custody/client";

// The SDK's own error classes, loaded untyped (its types are slow to compile and not needed here).
type ErrorClass = new (...args: unknown[]) => Error;
const sdk = (path: string) => import(path) as Promise<Record<string, ErrorClass>>;
const { McpError } = (await sdk("@modelcontextprotocol/sdk/types.js")) as { McpError: ErrorClass };
const { StreamableHTTPError } = (await sdk("@modelcontextprotocol/sdk/client/streamableHttp.js")) as { StreamableHTTPError: ErrorClass };

const BODY = '{"error":{"code":-32004,"data":{"decision_id":"fc1c370b2dfd0d328b45c1a29bfde574","reason":"signature_invalid"},"message":"Workflow history or its proof was refused"},"id":0,"jsonrpc":"2.0"}';

describe("custodyRefusal", () => {
  it("reads a StreamableHTTPError whose message holds the reply body", () => {
    const r = custodyRefusal(new StreamableHTTPError(403, `Error POSTing to endpoint: ${BODY}`));
    assert.deepEqual(r, {
      status: 403,
      code: -32004,
      message: "Workflow history or its proof was refused",
      data: { decision_id: "fc1c370b2dfd0d328b45c1a29bfde574", reason: "signature_invalid" },
    });
  });

  it("reads an McpError with data, and follows causes", () => {
    const e = new McpError(-32003, "Caller is not allowed to make this MCP request", { reason: "no_rule" });
    assert.equal(custodyRefusal(e)?.data.reason, "no_rule");
    assert.equal(custodyRefusal(new Error("wrapped", { cause: e }))?.code, -32003);
  });

  it("is undefined for other errors", () => {
    for (const e of [new Error("x"), new StreamableHTTPError(500, "Error POSTing to endpoint: {not json"), new StreamableHTTPError(404, 'Error: {"a":1}'), null, "s", 3]) {
      assert.equal(custodyRefusal(e), undefined);
    }
  });
});
