/** custodyFetch: mTLS with the SVID, and a fresh proof over the exact body of every request. */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { after, before, describe, it } from "node:test";

import { checkProof, custodyFetch, History, parseProof, sha256B64u } from "@custody/client";
import { devTrustDomain, NO_CUSTODY, type Workload } from "./helpers.js";

interface Seen {
  method: string;
  headers: Record<string, string>;
  body: Buffer;
  peer: string | undefined;
  reused: boolean;
}

describe("custodyFetch", { skip: NO_CUSTODY }, () => {
  let server: Server;
  let url: string;
  let bundle: string;
  let f: Workload, r: Workload;
  const seen: Seen[] = [];

  before(async () => {
    const td = devTrustDomain(["fraud-agent", "refund-agent", "spiffe://example.org/ns/tools/sa/server"], {
      "spiffe://example.org/ns/tools/sa/server": ["--dns", "localhost"],
    });
    bundle = td.bundle;
    [f, r] = [td.w["fraud-agent"]!, td.w["refund-agent"]!];
    const s = td.w["server"]!;
    server = createServer(
      { cert: readFileSync(s.cert), key: readFileSync(s.key), ca: readFileSync(bundle), requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          const peer = (req.socket as TLSSocket).getPeerX509Certificate()?.subjectAltName;
          const reused = (req.socket as TLSSocket).isSessionReused();
          seen.push({ method: req.method!, headers: req.headers as Record<string, string>, body: Buffer.concat(chunks), peer, reused });
          res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
        });
      },
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `https://localhost:${(server.address() as AddressInfo).port}/mcp`;
  });

  after(() => {
    server?.closeAllConnections();
    server?.close();
  });

  it("signs every request over its exact body, presenting the SVID", async () => {
    const h = new History().append(f.svid, { step: "fraud_check_passed", next: r.spiffeId });
    const fetch = custodyFetch(r.svid, { history: h, audience: "aud", caBundle: bundle });
    try {
      seen.length = 0;
      const json = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "x", params: { "é": 1 } });
      const res = await fetch(new URL(url), { method: "POST", body: json, headers: { "content-type": "application/json", "workflow-history": "stale" } });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { ok: true });
      await (await fetch(url, { method: "POST", body: new Uint8Array([114, 97, 119, 10, 0, 255]) })).arrayBuffer();
      await (await fetch(url, { method: "POST", body: new URLSearchParams({ a: "1 2" }) })).arrayBuffer();
      await (await fetch(url)).arrayBuffer();
      await (await fetch(new Request(url, { method: "PUT", body: "from a Request", headers: { "x-a": "1" } }))).arrayBuffer();
    } finally {
      await fetch.close();
    }
    assert.equal(seen.length, 5);
    const jtis = new Set<string>();
    for (const req of seen) {
      assert.match(req.peer ?? "", /URI:spiffe:\/\/example\.org\/ns\/payments\/sa\/refund-agent/);
      const proof = parseProof(req.headers).payload;
      assert.equal(proof.bdy, sha256B64u(req.body), req.method);
      assert.equal(proof.aud, "aud");
      assert.equal(proof.len, 1);
      assert.equal(proof.iss, r.spiffeId);
      checkProof(req.headers);
      jtis.add(proof.jti as string);
    }
    assert.equal(jtis.size, 5);
    assert.deepEqual(JSON.parse(seen[0]!.body.toString()).params, { "é": 1 });
    assert.equal(seen[0]!.headers["content-type"], "application/json");
    assert.deepEqual([...seen[1]!.body], [114, 97, 119, 10, 0, 255]);
    assert.equal(seen[2]!.body.toString(), "a=1+2");
    assert.equal(seen[3]!.method, "GET");
    assert.equal(seen[3]!.body.length, 0);
    assert.equal(seen[4]!.method, "PUT");
    assert.equal(seen[4]!.headers["x-a"], "1");
  });

  it("a history function is called per request; an empty history adds no headers", async () => {
    let current = new History();
    const fetch = custodyFetch(r.svid, { history: () => current, audience: "aud", caBundle: readFileSync(bundle) });
    try {
      seen.length = 0;
      await (await fetch(url, { method: "POST", body: "{}" })).arrayBuffer();
      current = current.append(f.svid, { step: "s", next: r.spiffeId });
      await (await fetch(url, { method: "POST", body: "{}" })).arrayBuffer();
    } finally {
      await fetch.close();
    }
    assert.equal(seen[0]!.headers["workflow-history"], undefined);
    assert.equal(seen[0]!.headers["workflow-history-proof"], undefined);
    assert.equal(History.parse(seen[1]!.headers).length, 1);
  });

  it("never resumes a TLS session (Envoy would not report the peer certificate as validated)", async () => {
    const h = new History().append(f.svid, { step: "s", next: r.spiffeId });
    const fetch = custodyFetch(r.svid, { history: h, audience: "aud", caBundle: bundle });
    try {
      seen.length = 0;
      await (await fetch(url, { method: "POST", body: "{}" })).arrayBuffer();
      // Parallel requests open further connections.
      await Promise.all([1, 2, 3, 4].map(async () => (await fetch(url, { method: "POST", body: "{}" })).arrayBuffer()));
    } finally {
      await fetch.close();
    }
    assert.equal(seen.length, 5);
    assert.ok(seen.every((s) => !s.reused && /refund-agent/.test(s.peer ?? "")));
  });

  it("refuses bodies it cannot sign exactly", async () => {
    const h = new History().append(f.svid, { step: "s", next: r.spiffeId });
    const fetch = custodyFetch(r.svid, { history: h, audience: "aud", caBundle: readFileSync(bundle, "utf8") });
    try {
      const stream = new ReadableStream({ start: (c) => (c.enqueue(new Uint8Array([1])), c.close()) });
      await assert.rejects(fetch(url, { method: "POST", body: stream, duplex: "half" } as RequestInit), /cannot sign a streamed body/);
      const form = new FormData();
      form.set("a", "b");
      await assert.rejects(fetch(url, { method: "POST", body: form }), /FormData/);
    } finally {
      await fetch.close();
    }
  });

  it("does not connect to a server outside the CA bundle's trust", async () => {
    const h = new History().append(f.svid, { step: "s", next: r.spiffeId });
    const other = devTrustDomain(["x"]);
    const fetch = custodyFetch(r.svid, { history: h, audience: "aud", caBundle: other.bundle });
    try {
      await assert.rejects(fetch(url, { method: "POST", body: "{}" }));
    } finally {
      await fetch.close();
    }
  });
});
