import { describe, expect, it } from "vitest";
import { counted } from "../../src/lib/plural.ts";

describe("counted", () => {
  it("names one thing in the singular and any other count, zero too, in the plural", () => {
    expect(counted(1, "payment")).toBe("1 payment");
    expect(counted(0, "payment")).toBe("0 payments");
    expect(counted(12, "router job")).toBe("12 router jobs");
  });

  it("takes the plural of a noun that does not just add an s", () => {
    expect(counted(1, "audit entry", "audit entries")).toBe("1 audit entry");
    expect(counted(3, "match", "matches")).toBe("3 matches");
  });
});
