import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { checkPhone, displayPhone, normalizePhone } from "../../src/lib/phone.ts";

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

describe("which numbers are served (SERVED_COUNTRIES)", () => {
  it.each([
    ["+254712345678", { kind: "served", e164: "+254712345678" }],
    ["0712345678", { kind: "served", e164: "+254712345678" }],
    ["254112345678", { kind: "served", e164: "+254112345678" }],
    ["+256712345678", { kind: "foreign", e164: "+256712345678", country: "UG" }],
    // A gateway that drops the `+` does not turn a foreign number into "not a number".
    ["256712345678", { kind: "foreign", e164: "+256712345678", country: "UG" }],
    ["+447912345678", { kind: "foreign", e164: "+447912345678", country: "GB" }],
    ["447912345678", { kind: "foreign", e164: "+447912345678", country: "GB" }],
    ["hello", { kind: "invalid" }],
    ["07123", { kind: "invalid" }],
    // Valid Kenyan numbers that no M-Pesa prompt or SMS reaches: a Nairobi landline, toll-free.
    ["020 1234567", { kind: "invalid" }],
    ["0800 123456", { kind: "invalid" }],
  ])("by default Kenya only: %s", (input, verdict) => {
    expect(checkPhone(input)).toEqual(verdict);
  });

  it("serves every configured country, and reads national forms as the first one's", () => {
    const served = ["UG", "KE"];
    expect(checkPhone("+256712345678", served)).toEqual({ kind: "served", e164: "+256712345678" });
    expect(checkPhone("+254712345678", served)).toEqual({ kind: "served", e164: "+254712345678" });
    expect(checkPhone("0712345678", served)).toEqual({ kind: "served", e164: "+256712345678" });
    expect(checkPhone("+255712345678", served)).toMatchObject({ kind: "foreign", country: "TZ" });
  });

  it("is one setting, Kenya by default, and a bad value is named", () => {
    expect(loadConfig({}).SERVED_COUNTRIES).toEqual(["KE"]);
    expect(loadConfig({ SERVED_COUNTRIES: "ke, ug" }).SERVED_COUNTRIES).toEqual(["KE", "UG"]);
    expect(() => loadConfig({ SERVED_COUNTRIES: "KE,Kenya" })).toThrow(/SERVED_COUNTRIES/);
    expect(() => loadConfig({ SERVED_COUNTRIES: "XX" })).toThrow(/SERVED_COUNTRIES/);
  });

  it("agrees with normalizePhone on every Kenyan number", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^(0|\+254|254)?[17]\d{8}$/), (typed) => {
        const verdict = checkPhone(typed);
        const e164 = normalizePhone(typed);
        if (e164 === null) expect(verdict).toEqual({ kind: "invalid" });
        else expect(verdict).toEqual({ kind: "served", e164 });
      }),
    );
  });
});
