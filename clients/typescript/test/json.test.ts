/**
 * The strict JSON reader (src/json.ts, docs/history-format.md §2): what it
 * refuses, which numbers count as integer spellings, and that faults come in
 * text order.
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, it } from "node:test";

import { DuplicateMember, JsonError, parseJson, strictJsonObject } from "@custody/client";

// Internal helpers, from the built module (not part of the package's API).
import { spelledAsInteger, validUtf8Prefix } from "../dist/json.js";

const enc = (s: string) => new TextEncoder().encode(s);

describe("strict JSON", () => {
  it("reads ordinary JSON", () => {
    assert.deepEqual(parseJson(' {"a":[1,-2,3.5,"x",null,true,false],"b":{"c":{}},"\\u00e9":"\\ud83d\\ude00"} '), {
      a: [1, -2, 3.5, "x", null, true, false],
      b: { c: {} },
      é: "😀",
    });
    assert.equal(Object.keys(strictJsonObject('{"__proto__":1}')).join(), "__proto__");
  });

  for (const [text, integer] of [
    ["0", true], ["12", true], ["9007199254740992", true],
    ["-0", false], ["-12", false], ["1.0", false], ["1e3", false], ["1E2", false], ["100.0", false], ["1e-400", false],
  ] as const) {
    it(`${text} is ${integer ? "" : "not "}an integer spelling`, () => {
      const obj = strictJsonObject(`{"n":${text}}`);
      assert.equal(typeof obj.n, "number");
      assert.equal(spelledAsInteger(obj, "n"), integer);
    });
  }

  it("remembers spellings per object, for its own members only", () => {
    const obj = strictJsonObject('{"a":1,"b":1.0,"c":{"d":2},"e":"1"}');
    assert.deepEqual(["a", "b", "c", "e", "zz"].map((m) => spelledAsInteger(obj, m)), [true, false, false, false, false]);
    assert.equal(spelledAsInteger(obj.c as object, "d"), true);
    assert.equal(spelledAsInteger({ a: 1 }, "a"), false);
  });

  for (const text of [
    "1e400", "-1e400", "9".repeat(400), "-" + "9".repeat(400),
    "NaN", "Infinity", "-Infinity", "01", "1.", ".5", "+1", "-", "0x10", "1e", "1e+",
    "", " ", "{", "[1,]", '{"a":1,}', '{"a" 1}', "{'a':1}", '{"a":1} x', "[1] [2]", "tru", "nul",
    '"\\ud800"', '"\\udc00x"', '"\\ud83d"', '"a\u0001"', '"\\x"', '"\\u12"', "\ufeff{}", "\u00a0{}", '{"a":1}\u00a0',
  ]) {
    it(`refuses ${JSON.stringify(text.slice(0, 20))}`, () => {
      assert.throws(() => parseJson(enc(text)), JsonError);
    });
  }

  it("refuses invalid UTF-8", () => {
    for (const bytes of [[0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xff, 0x7b, 0x7d], [0xf4, 0x90, 0x80, 0x80]]) {
      assert.throws(() => parseJson(new Uint8Array(bytes)), JsonError);
    }
  });

  for (const [text, member] of [
    ['{"a":1,"a":2}', "a"],
    ['{"x":{"b":[{"c":1,"c":1}]}}', "c"],
    ['{"a":1,"\\u0061":2}', "a"],
    ['[{"k":1,"k":1}]', "k"],
    ['{"a":1,"a"}', "a"],
    ['{"a":1,"a":1e400}', "a"],
    ['{"__proto__":1,"__proto__":2}', "__proto__"],
  ] as const) {
    it(`refuses the duplicate member in ${text}`, () => {
      assert.throws(() => parseJson(text), (e: unknown) => e instanceof DuplicateMember && e.member === member);
    });
  }

  it("reads 32 levels and refuses 33, without recursing further", () => {
    for (const [open, close] of [["[", "]"], ['{"a":', "}"]]) {
      parseJson(open!.repeat(32) + "0" + close!.repeat(32));
      assert.throws(() => parseJson(open!.repeat(33) + "0" + close!.repeat(33)), /nested deeper/);
    }
    assert.throws(() => parseJson("[".repeat(1_000_000)), /nested deeper/);
  });

  it("reports faults in text order, as the verifier meets them", () => {
    const deep = "[".repeat(40) + "]".repeat(40);
    assert.throws(() => parseJson(`{"a":1,"a":${deep}}`), DuplicateMember);
    assert.throws(() => parseJson(`{"a":${deep},"a":1}`), /nested/);
    assert.throws(() => parseJson(new Uint8Array([...enc('{"a":1,"a":"'), 0xff, ...enc('"}')])), DuplicateMember);
    assert.throws(() => parseJson(new Uint8Array([...enc('{"a":"'), 0xff, ...enc('","a":1}')])), (e: unknown) => e instanceof JsonError);
    assert.throws(() => parseJson('{"a":1e999,"a":1}'), /out of range/);
  });

  it("finds the valid UTF-8 prefix exactly where TextDecoder stops", () => {
    const fatal = new TextDecoder("utf-8", { fatal: true });
    const valid = (b: Uint8Array) => {
      try {
        fatal.decode(b);
        return true;
      } catch {
        return false;
      }
    };
    const pool = [0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xa0, 0xed, 0x9f, 0xef, 0xf0, 0x90, 0xf4, 0x8f, 0xf5, 0xff];
    for (let t = 0; t < 5000; t++) {
      const r = randomBytes(8);
      const b = new Uint8Array([...r].map((x) => pool[x % pool.length]!));
      const n = validUtf8Prefix(b);
      assert.equal(n === b.length, valid(b), Buffer.from(b).toString("hex"));
      assert.ok(valid(b.subarray(0, n)));
    }
    assert.equal(validUtf8Prefix(enc("é😀€a")), enc("é😀€a").length);
  });
});
