/**
 * Strict JSON as the verifier reads JWS headers and payloads
 * (docs/history-format.md §2): RFC 8259 UTF-8 text, one value; a member twice
 * at any depth, nesting past 32 levels, or a number that is not a finite IEEE
 * 754 double is refused. Faults are reported in the order they occur in the
 * text, as the Rust verifier's streaming parser meets them.
 *
 * `JSON.parse` cannot do this: it lets the last duplicate win, accepts lone
 * surrogates, and forgets how a number was spelled. Here the members of each
 * object whose value was spelled as an unsigned integer (`0`, `12`; not `-0`,
 * `1.0`, `1e3`) are remembered (`spelledAsInteger`).
 */

import { EncodingError } from "./codec.js";

/** Deepest nesting of arrays and objects; the outermost value is level 1. */
export const MAX_JSON_DEPTH = 32;

/** Not strict JSON: malformed, nested too deeply, or a number out of range. */
export class JsonError extends EncodingError {
  override name = "JsonError";
}

/** An object has the member `member` twice (compared after unescaping). */
export class DuplicateMember extends EncodingError {
  override name = "DuplicateMember";
  constructor(readonly member: string) {
    super(`duplicate JSON member ${JSON.stringify(member)}`);
  }
}

/** A JSON object value. */
export type JsonObject = { [member: string]: unknown };

// Per object read here: the members whose number was written `0` or `[1-9][0-9]*`.
const INTEGER_SPELLED = new WeakMap<object, Set<string>>();

/** True when `obj` was read by `parseJson` and its `member` was spelled as an unsigned integer. */
export function spelledAsInteger(obj: object, member: string): boolean {
  return INTEGER_SPELLED.get(obj)?.has(member) ?? false;
}

/**
 * The one JSON value of `data` (UTF-8 bytes, or a string). Recursion is
 * bounded by `maxDepth`, every loop by the length of the input.
 */
export function parseJson(data: Uint8Array | string, maxDepth = MAX_JSON_DEPTH): unknown {
  if (typeof data === "string") return new Reader(data, maxDepth).document();
  // Read the valid UTF-8 prefix: a fault before the first invalid byte is reported as such.
  const valid = validUtf8Prefix(data);
  // ignoreBOM keeps a leading U+FEFF in the text, where it is refused like any other non-JSON character.
  const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(data.subarray(0, valid));
  const reader = new Reader(text, maxDepth);
  if (valid === data.byteLength) return reader.document();
  reader.document();
  throw new JsonError(`not UTF-8 at byte ${valid}`);
}

/** `parseJson`, and the value must be an object. */
export function strictJsonObject(data: Uint8Array | string): JsonObject {
  const value = parseJson(data);
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new JsonError("not a JSON object");
  return value as JsonObject;
}

/** Length of the longest prefix of `b` that is well-formed UTF-8 (RFC 3629: no overlongs, surrogates, or code points past U+10FFFF). */
export function validUtf8Prefix(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    // Continuation count, and the range of the second byte (RFC 3629 §4).
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return i;
    }
    i += n + 1;
  }
  return i;
}

const WS = /[ \t\n\r]*/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const UNSIGNED_INTEGER = /^(?:0|[1-9][0-9]*)$/;
const LONE_SURROGATE = /\p{Cs}/u;
const LITERALS = [
  ["true", true],
  ["false", false],
  ["null", null],
] as const;

class Reader {
  private pos = 0;
  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {}

  document(): unknown {
    const v = this.value(0);
    this.ws();
    if (this.pos !== this.text.length) throw this.fail("trailing characters");
    return v;
  }

  private fail(what: string): JsonError {
    return new JsonError(`not JSON: ${what} at offset ${this.pos}`);
  }

  private ws(): void {
    WS.lastIndex = this.pos;
    WS.exec(this.text);
    this.pos = WS.lastIndex;
  }

  private string(): string {
    STRING.lastIndex = this.pos;
    const m = STRING.exec(this.text);
    if (!m) throw this.fail("bad string");
    const value = JSON.parse(m[0]) as string;
    if (LONE_SURROGATE.test(value)) throw this.fail("lone surrogate");
    this.pos += m[0].length;
    return value;
  }

  /** A value inside `depth` containers. */
  private value(depth: number): unknown {
    this.ws();
    const c = this.text[this.pos];
    if (c === "{" || c === "[") {
      if (depth >= this.maxDepth) throw this.fail(`nested deeper than ${this.maxDepth} levels`);
      this.pos++;
      return c === "{" ? this.object(depth + 1) : this.array(depth + 1);
    }
    if (c === '"') return this.string();
    for (const [word, v] of LITERALS) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return v;
      }
    }
    return this.number();
  }

  private object(depth: number): JsonObject {
    const out: JsonObject = {};
    const integers = new Set<string>();
    INTEGER_SPELLED.set(out, integers);
    this.ws();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.text[this.pos] !== '"') throw this.fail("expected a member name");
      const key = this.string();
      if (Object.hasOwn(out, key)) throw new DuplicateMember(key);
      this.ws();
      if (this.text[this.pos] !== ":") throw this.fail("expected ':'");
      this.pos++;
      this.ws();
      const start = this.pos;
      const v = this.value(depth);
      if (typeof v === "number" && UNSIGNED_INTEGER.test(this.text.slice(start, this.pos))) integers.add(key);
      // A data property even for `__proto__`.
      Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
      this.ws();
      const d = this.text[this.pos++];
      if (d === "}") return out;
      if (d !== ",") throw this.fail("expected ',' or '}'");
    }
  }

  private array(depth: number): unknown[] {
    const out: unknown[] = [];
    this.ws();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth));
      this.ws();
      const d = this.text[this.pos++];
      if (d === "]") return out;
      if (d !== ",") throw this.fail("expected ',' or ']'");
    }
  }

  private number(): number {
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(this.text);
    if (!m) throw this.fail("unexpected character");
    const v = Number(m[0]);
    if (!Number.isFinite(v)) throw this.fail("number out of range of an IEEE 754 double");
    this.pos += m[0].length;
    return v;
  }
}
