import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeProxyLocal, parseProxyHeader } from "../../../src/protocol/proxy.ts";

describe("encodeProxyLocal", () => {
  it("v1 is PROXY UNKNOWN, which the parser reads back with no addresses", () => {
    const bytes = encodeProxyLocal("v1");
    assert.equal(new TextDecoder().decode(bytes), "PROXY UNKNOWN\r\n");
    const parsed = parseProxyHeader(bytes);
    assert.equal(parsed.status, "done");
    if (parsed.status !== "done") return;
    assert.equal(parsed.length, 15);
    assert.equal(parsed.header.version, 1);
    assert.equal(parsed.header.source, undefined);
  });

  it("v2 is the 16-byte LOCAL header, read back as command local", () => {
    const bytes = encodeProxyLocal("v2");
    assert.equal(bytes.length, 16);
    assert.equal(bytes[12], 0x20);
    assert.equal(bytes[13], 0x00);
    assert.deepEqual([...bytes.subarray(14)], [0, 0]);
    const parsed = parseProxyHeader(bytes);
    assert.equal(parsed.status, "done");
    if (parsed.status !== "done") return;
    assert.equal(parsed.length, 16);
    assert.deepEqual(parsed.header, { version: 2, command: "local" });
  });
});
