/** X.509-SVIDs: the certificate chain and P-256 key a workload signs with. */

import { createPrivateKey, sign as cryptoSign, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";

import { isSpiffeId, sha256B64u } from "./codec.js";

/** The order n of the P-256 group. */
export const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
export const P256_HALF_N = P256_N >> 1n;

/** The certificate or key cannot sign Custody histories. */
export class SvidError extends Error {
  override name = "SvidError";
}

export function bytesToBigInt(b: Uint8Array): bigint {
  return b.byteLength === 0 ? 0n : BigInt("0x" + Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex"));
}

export function bigIntTo32(n: bigint): Uint8Array {
  return new Uint8Array(Buffer.from(n.toString(16).padStart(64, "0"), "hex"));
}

/** True for an ECDSA P-256 key (public or private). */
export function isP256(key: KeyObject): boolean {
  return key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1";
}

/**
 * ES256 over `message` with `key`: 64 bytes `r || s` (IEEE P1363), `s`
 * normalised to low-S (`n − s` when `s > n/2`). Node's crypto uses random
 * nonces (not RFC 6979); both verify the same.
 */
export function es256Sign(key: KeyObject, message: Uint8Array): Uint8Array {
  const sig = new Uint8Array(cryptoSign("sha256", message, { key, dsaEncoding: "ieee-p1363" }));
  if (sig.byteLength !== 64) throw new SvidError("unexpected ECDSA signature length");
  const s = bytesToBigInt(sig.subarray(32));
  if (s > P256_HALF_N) sig.set(bigIntTo32(P256_N - s), 32);
  return sig;
}

/**
 * The entries of Node's `X509Certificate.subjectAltName` text, e.g.
 * `URI:spiffe://example.org/x, DNS:localhost` (values with special characters
 * are JSON-quoted by Node).
 */
export function parseSubjectAltName(text: string | undefined): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (!text) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    if (colon < 0) throw new SvidError("cannot read the certificate's subjectAltName");
    const type = text.slice(i, colon);
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      let k = j + 1;
      while (k < text.length && text[k] !== '"') k += text[k] === "\\" ? 2 : 1;
      value = JSON.parse(text.slice(j, k + 1)) as string;
      j = k + 1;
    } else {
      const end = text.indexOf(", ", j);
      value = text.slice(j, end < 0 ? text.length : end);
      j = end < 0 ? text.length : end;
    }
    out.push([type, value]);
    if (j < text.length) {
      if (!text.startsWith(", ", j)) throw new SvidError("cannot read the certificate's subjectAltName");
      j += 2;
    }
    i = j;
  }
  return out;
}

/** The single URI SAN of `cert`, which must be a SPIFFE ID with a path. */
export function spiffeIdOf(cert: X509Certificate): string {
  const uris = parseSubjectAltName(cert.subjectAltName)
    .filter(([t]) => t === "URI")
    .map(([, v]) => v);
  if (uris.length !== 1) throw new SvidError(`the certificate has ${uris.length} URI SANs, not exactly one`);
  const id = uris[0]!;
  if (!isSpiffeId(id, { requirePath: true })) throw new SvidError(`the URI SAN ${JSON.stringify(id)} is not a SPIFFE ID with a path`);
  return id;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM text, in order. */
export function certificatesFromPem(pem: string | Uint8Array): X509Certificate[] {
  const text = typeof pem === "string" ? pem : Buffer.from(pem).toString("ascii");
  const blocks = text.match(PEM_CERT) ?? [];
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (e) {
    throw new SvidError(`cannot read the certificate PEM: ${(e as Error).message}`);
  }
}

function derOf(cert: X509Certificate): Uint8Array {
  return new Uint8Array(cert.raw);
}

/** An X.509-SVID: leaf certificate, optional intermediates, P-256 private key. */
export class Svid {
  readonly leaf: X509Certificate;
  readonly intermediates: readonly X509Certificate[];
  readonly spiffeId: string;
  /** `x5t#S256`: base64url(SHA-256(leaf DER)). */
  readonly x5t: string;
  readonly #key: KeyObject;

  constructor(leaf: X509Certificate, privateKey: KeyObject, intermediates: readonly X509Certificate[] = []) {
    if (privateKey.type !== "private" || !isP256(privateKey)) throw new SvidError("the key is not an ECDSA P-256 private key");
    if (!isP256(leaf.publicKey)) throw new SvidError("the certificate's key is not ECDSA P-256");
    if (!leaf.checkPrivateKey(privateKey)) throw new SvidError("the certificate does not hold the key");
    this.leaf = leaf;
    this.intermediates = Object.freeze([...intermediates]);
    this.#key = privateKey;
    this.spiffeId = spiffeIdOf(leaf);
    this.x5t = sha256B64u(derOf(leaf));
    Object.freeze(this);
  }

  /** From PEM text: the leaf first, then any intermediates; the key as PKCS#8 (`PRIVATE KEY`) or SEC 1 (`EC PRIVATE KEY`). */
  static fromPem(certPem: string | Uint8Array, keyPem: string | Uint8Array, passphrase?: string): Svid {
    const certs = certificatesFromPem(certPem);
    if (certs.length === 0) throw new SvidError("no certificate in the PEM");
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: Buffer.from(keyPem), format: "pem", ...(passphrase !== undefined ? { passphrase } : {}) });
    } catch (e) {
      throw new SvidError(`cannot read the private key PEM: ${(e as Error).message}`);
    }
    return new Svid(certs[0]!, key, certs.slice(1));
  }

  /** From `svid.pem` (leaf, then intermediates) and `svid.key`, as `custody ca issue` and SPIRE's helpers write them. */
  static fromFiles(certPath: string | URL, keyPath: string | URL, passphrase?: string): Svid {
    return Svid.fromPem(readFileSync(certPath), readFileSync(keyPath), passphrase);
  }

  /** From DER: the leaf certificate, its PKCS#8 key, then any intermediates. */
  static fromDer(leafDer: Uint8Array, pkcs8Der: Uint8Array, intermediatesDer: readonly Uint8Array[] = []): Svid {
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: Buffer.from(pkcs8Der), format: "der", type: "pkcs8" });
    } catch (e) {
      throw new SvidError(`cannot read the PKCS#8 key: ${(e as Error).message}`);
    }
    return new Svid(new X509Certificate(Buffer.from(leafDer)), key, intermediatesDer.map((d) => new X509Certificate(Buffer.from(d))));
  }

  get leafDer(): Uint8Array {
    return derOf(this.leaf);
  }

  /** DER of the leaf, then the intermediates: what `workflow-history-certs` carries. */
  get chainDer(): Uint8Array[] {
    return [this.leaf, ...this.intermediates].map(derOf);
  }

  /** ES256 over `message`: 64 bytes `r || s`, low-S. */
  sign(message: Uint8Array): Uint8Array {
    return es256Sign(this.#key, message);
  }

  /** The leaf then the intermediates, PEM (for a TLS client certificate). */
  certChainPem(): string {
    return [this.leaf, ...this.intermediates].map((c) => c.toString()).join("");
  }

  /** The private key, PKCS#8 PEM (for a TLS client key). */
  keyPem(): string {
    return this.#key.export({ type: "pkcs8", format: "pem" }).toString();
  }

  toString(): string {
    return `Svid(${this.spiffeId}, x5t=${this.x5t})`;
  }
}
