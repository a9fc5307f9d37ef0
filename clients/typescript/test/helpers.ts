/** Shared test data: the repository's fixtures and vectors, and `dist/custody`. */

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { b64uDecode, Svid } from "@custody/client";

/** clients/typescript (tests run from dist-test/, against the built dist/). */
export const PKG = fileURLToPath(new URL("../", import.meta.url));
export const REPO = fileURLToPath(new URL("../../../", import.meta.url));
export const TESTDATA = join(REPO, "history", "testdata");
export const CUSTODY = join(REPO, "dist", "custody");
export const HAVE_CUSTODY = existsSync(CUSTODY);
export const NO_CUSTODY = HAVE_CUSTODY ? false : "dist/custody is not built (./build.sh)";

export const SA = "spiffe://example.org/ns/payments/sa/";

export interface Vector {
  name: string;
  about: string;
  body: string;
  entries: number;
  expect: string;
  /** Decided before any certificate is judged against a trust bundle: the holder's check gives the same verdict. */
  holder_check?: boolean;
  now: number;
  peer: string;
  "workflow-history": string;
  "workflow-history-proof": string;
  "workflow-history-certs": string;
}

export interface Vectors {
  audience: string;
  /** The limits every implementation shares (docs/history-format.md §8). */
  limits: Record<string, number>;
  ok_decoded: {
    body_sha256: string;
    entries: Array<{ header: string; payload: string; sha256: string }>;
    proof_payload: string;
    x5t: Record<string, string>;
  };
  vectors: Vector[];
}

export const vectors: Vectors = JSON.parse(readFileSync(join(TESTDATA, "vectors.json"), "utf8"));
export const fixtures: {
  cas: Record<string, { cert_pem: string; key_pem: string }>;
  svids: Record<string, { cert: string; key: string; uris: string[] }>;
} = JSON.parse(readFileSync(join(TESTDATA, "fixtures.json"), "utf8"));

export function vector(name: string): Vector {
  const v = vectors.vectors.find((x) => x.name === name);
  if (!v) throw new Error(`no vector ${name}`);
  return v;
}

/** The instant vector "ok" is checked at: inside every fixture SVID's validity window. */
export const NOW = vector("ok").now;

/** A fixture SVID (fixed keys; certificates valid 2026-04-01..2026-06-01). */
export function fixtureSvid(name: string): Svid {
  const s = fixtures.svids[name]!;
  return Svid.fromDer(b64uDecode(s.cert), b64uDecode(s.key));
}

export function tmp(prefix = "custody-ts-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function custody(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(CUSTODY, args, { encoding: "utf8", timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function ok(...args: string[]): string {
  const r = custody(...args);
  if (r.status !== 0) throw new Error(`custody ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

export interface Workload {
  spiffeId: string;
  cert: string;
  key: string;
  svid: Svid;
}

/** `custody ca init` + `custody ca issue` for the given workloads (names under /ns/payments/sa/). */
export function devTrustDomain(names: string[], extra: Record<string, string[]> = {}): { root: string; bundle: string; w: Record<string, Workload> } {
  const root = tmp("custody-ts-td-");
  ok("ca", "init", "--trust-domain", "example.org", "--out", join(root, "ca"), "--backdate", "10m");
  const w: Record<string, Workload> = {};
  for (const name of names) {
    const spiffeId = name.startsWith("spiffe://") ? name : SA + name;
    const short = spiffeId.split("/").pop()!;
    ok("ca", "issue", "--ca", join(root, "ca"), "--id", spiffeId, "--out", join(root, short), "--backdate", "10m", ...(extra[name] ?? []));
    const cert = join(root, short, "svid.pem");
    const key = join(root, short, "svid.key");
    w[short] = { spiffeId, cert, key, svid: Svid.fromFiles(cert, key) };
  }
  return { root, bundle: join(root, "ca", "bundle.pem"), w };
}
