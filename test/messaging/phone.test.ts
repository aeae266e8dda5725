import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { displayPhone, normalizePhone } from "../../src/lib/phone.ts";

describe("normalizePhone", () => {
  it.each([
    ["0712345678", "+254712345678"],
    ["0112345678", "+254112345678"],
    ["254712345678", "+254712345678"],
    ["+254712345678", "+254712345678"],
    ["712345678", "+254712345678"],
    [" 0712 345 678 ", "+254712345678"],
    ["0712-345-678", "+254712345678"],
    ["+255712345678", "+255712345678"],
  ])("%s → %s", (input, expected) => {
    expect(normalizePhone(input)).toBe(expected);
  });

  it.each(["", "12", "07123", "abc", "0712345678x", "+", "*144#"])("rejects %j", (input) => {
    expect(normalizePhone(input)).toBeNull();
  });

  it("is idempotent: a normalised number normalises to itself", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^0[17]\d{8}$/), (local) => {
        const once = normalizePhone(local);
        if (once !== null) expect(normalizePhone(once)).toBe(once);
      }),
    );
  });

  it("displays a Kenyan number in the national form", () => {
    expect(displayPhone("+254712345678")).toBe("0712 345678");
  });
});
