import { describe, expect, it } from "vitest";
import { parseAccount, parseAmount } from "../../src/bots/admin/parse.ts";

describe("amounts typed in the admin chat", () => {
  it("take shillings however Kenyans write them, and refuse what is not money with a reason", () => {
    for (const typed of ["1500", "1,500", "KES1500", "Ksh.1500", "ksh1,500", "Sh.1500", "Shs 1500", "1500/="])
      expect(parseAmount(typed), typed).toEqual({ ok: true, value: 150_000 });
    expect(parseAmount("1500.50")).toEqual({ ok: true, value: 150_050 });
    expect(parseAmount("Ksh.500.505")).toMatchObject({
      ok: false,
      error: expect.stringMatching(/two decimals/),
    });
    expect(parseAmount("-500")).toMatchObject({ ok: false, error: "The amount must be more than zero." });
    expect(parseAmount("1,00")).toMatchObject({
      ok: false,
      error: expect.stringMatching(/is not an amount/),
    });
    expect(parseAmount("2000000")).toMatchObject({
      ok: false,
      error: expect.stringMatching(/KES 1,000,000/),
    });
  });

  it("take account numbers as an import brings them, with or without #", () => {
    expect(parseAccount("KB_001")).toEqual({ ok: true, value: "KB_001" });
    expect(parseAccount("#TD00001")).toEqual({ ok: true, value: "#TD00001" });
    expect(parseAccount("TD 0001")).toMatchObject({ ok: false });
  });
});
