import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { plainPunctuation, smsParts } from "../../src/lib/sms-text.ts";

describe("SMS parts", () => {
  it("counts GSM-7 text in 160 characters, then 153 a part; the extension characters twice", () => {
    expect(smsParts("a".repeat(160))).toEqual({ unicode: false, parts: 1 });
    expect(smsParts("a".repeat(161))).toEqual({ unicode: false, parts: 2 });
    expect(smsParts("a".repeat(306))).toEqual({ unicode: false, parts: 2 });
    expect(smsParts("a".repeat(307))).toEqual({ unicode: false, parts: 3 });
    // € and [ ] are escapes: 80 of them fill one part.
    expect(smsParts("€".repeat(80))).toEqual({ unicode: false, parts: 1 });
    expect(smsParts("€".repeat(81))).toEqual({ unicode: false, parts: 2 });
  });

  it("sends the whole text as Unicode for one character outside the alphabet: 70, then 67 a part", () => {
    expect(smsParts(`${"a".repeat(69)}’`)).toEqual({ unicode: true, parts: 1 });
    expect(smsParts(`${"a".repeat(70)}’`)).toEqual({ unicode: true, parts: 2 });
    // An emoji is two UTF-16 units.
    expect(smsParts(`${"a".repeat(132)}🙂`)).toEqual({ unicode: true, parts: 2 });
    expect(smsParts(`${"a".repeat(133)}🙂`)).toEqual({ unicode: true, parts: 3 });
  });

  it("a 480-character notice typed with a curly quote: 8 parts as it was typed, 4 once plain", () => {
    const typed = `Dear customer, we’re upgrading the Kibera network tonight – expect short drops… ${"x".repeat(400)}`;
    expect(smsParts(typed)).toMatchObject({ unicode: true, parts: 8 });
    expect(smsParts(plainPunctuation(typed))).toEqual({ unicode: false, parts: 4 });
  });

  it("plain punctuation turns typed quotes, dashes and spaces into the SMS alphabet, and leaves it alone", () => {
    const typed = [..."‘’‚‛ʼ′“”„‟″‐‑‒–—―−…\u00a0\u2009\u202f"];
    const gsm = [..."aZ09 .,!?'\"-€@ñ"];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...typed, ...gsm), { maxLength: 60 }), (chars) => {
        const text = chars.join("");
        expect(smsParts(plainPunctuation(text)).unicode).toBe(false);
        const plainOnly = chars.filter((c) => gsm.includes(c)).join("");
        expect(plainPunctuation(plainOnly)).toBe(plainOnly);
      }),
    );
  });
});
