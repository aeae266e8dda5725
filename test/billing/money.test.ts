import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  formatKes,
  mpesaAmountCents,
  parseShillings,
  payableAfterCredit,
  prorationDelta,
  prorationDeltaRange,
  prorationDirection,
  unusedShare,
  unusedShareInShillings,
} from "../../src/billing/money.ts";

const cents = fc.integer({ min: 0, max: 100_000_000 });
const period = fc.integer({ min: 1, max: 400 * 86_400_000 });

describe("proration rounding", () => {
  it("the unused and used parts of an amount add up to the amount, to the cent", () => {
    fc.assert(
      fc.property(cents, period, fc.double({ min: 0, max: 1, noNaN: true }), (amount, total, fraction) => {
        const remaining = Math.floor(total * fraction);
        const unused = unusedShare(amount, remaining, total);
        const used = amount - unused;
        expect(unused).toBeGreaterThanOrEqual(0);
        expect(used).toBeGreaterThanOrEqual(0);
        expect(Number.isInteger(unused)).toBe(true);
        // Rounded once, half up: never more than half a cent from the exact share.
        expect(Math.abs(unused - (amount * remaining) / total)).toBeLessThanOrEqual(0.5 + 1e-6);
      }),
    );
  });

  it("a whole period is the whole price and no time left is nothing", () => {
    fc.assert(
      fc.property(cents, period, (amount, total) => {
        expect(unusedShare(amount, total, total)).toBe(amount);
        expect(unusedShare(amount, 0, total)).toBe(0);
      }),
    );
  });

  it("more time left never costs less", () => {
    fc.assert(
      fc.property(cents, period, fc.nat(), fc.nat(), (amount, total, a, b) => {
        const [short, long] = [a % (total + 1), b % (total + 1)].sort((x, y) => x - y) as [number, number];
        expect(unusedShare(amount, short, total)).toBeLessThanOrEqual(unusedShare(amount, long, total));
      }),
    );
  });

  it("no cent is created or lost over any sequence of plan changes at one instant", () => {
    fc.assert(
      fc.property(fc.array(cents, { minLength: 2, maxLength: 12 }), period, fc.nat(), (prices, total, r) => {
        const remaining = r % (total + 1);
        let charged = 0;
        for (let i = 1; i < prices.length; i++)
          charged += prorationDelta(prices[i - 1]!, prices[i]!, remaining, total);
        expect(charged).toBe(prorationDelta(prices[0]!, prices.at(-1)!, remaining, total));
        // Going back to where it started nets exactly zero.
        const back = prorationDelta(prices.at(-1)!, prices[0]!, remaining, total);
        expect(charged + back).toBe(0);
      }),
    );
  });
});

describe("upgrade or downgrade", () => {
  it("a change's charge never has the other sign than its direction, however much time is left", () => {
    const length = fc.integer({ min: 3_600_000, max: 400 * 86_400_000 });
    fc.assert(
      fc.property(
        cents,
        cents,
        length,
        length,
        fc.nat({ max: 400 * 86_400_000 }),
        (from, to, fromTotal, toTotal, r) => {
          const delta = prorationDelta(from, to, r, fromTotal, toTotal);
          const direction = prorationDirection(from, to, fromTotal, toTotal);
          expect(Math.sign(delta) === 0 || Math.sign(delta) === direction).toBe(true);
          // A plan of a shorter period taken now runs to the period end: it is charged for all that time.
          expect(Math.abs(delta - (to / toTotal - from / fromTotal) * r)).toBeLessThanOrEqual(100 + 1e-3);
        },
      ),
    );
  });
});

describe("charges quoted while a payment is on its way", () => {
  it("the lowest and highest charge over a stretch of time are those of some instant in it, and bound all the others", () => {
    const price = fc.integer({ min: 0, max: 1_000_000 });
    const length = fc.integer({ min: 10_000, max: 10_000_000 });
    fc.assert(
      fc.property(
        price,
        price,
        length,
        length,
        fc.nat({ max: 20_000_000 }),
        fc.nat({ max: 3_000 }),
        (from, to, fromTotal, toTotal, shortest, width) => {
          const longest = shortest + width;
          const quoted: number[] = [];
          for (let remaining = shortest; remaining <= longest; remaining++)
            quoted.push(prorationDelta(from, to, remaining, fromTotal, toTotal));
          expect(prorationDeltaRange(from, to, shortest, longest, fromTotal, toTotal)).toEqual({
            lowest: Math.min(...quoted),
            highest: Math.max(...quoted),
          });
        },
      ),
    );
  });
});

describe("quotes, charges and M-Pesa amounts agree in whole shillings", () => {
  it("a share in shillings is the exact share rounded half up to a shilling", () => {
    fc.assert(
      fc.property(cents, period, fc.double({ min: 0, max: 1, noNaN: true }), (amount, total, fraction) => {
        const remaining = Math.floor(total * fraction);
        const share = unusedShareInShillings(amount, remaining, total);
        expect(share % 100).toBe(0);
        const exactShillings = (amount * remaining) / total / 100;
        expect(Math.abs(share / 100 - exactShillings)).toBeLessThanOrEqual(0.5 + 1e-6);
        expect(unusedShareInShillings(amount, total, total)).toBe(Math.round(amount / 100) * 100);
      }),
    );
  });

  it("every plan-change charge or credit is whole shillings, within a shilling of the exact difference", () => {
    fc.assert(
      fc.property(cents, cents, period, fc.nat(), (from, to, total, r) => {
        const remaining = r % (total + 1);
        const delta = prorationDelta(from, to, remaining, total);
        expect(Math.abs(delta % 100)).toBe(0);
        expect(Math.abs(delta - ((to - from) * remaining) / total)).toBeLessThanOrEqual(100 + 1e-6);
      }),
    );
  });

  it("what M-Pesa asks for a change is the charge itself, or nothing when credit covers it all", () => {
    fc.assert(
      fc.property(
        cents,
        cents,
        period,
        fc.nat(),
        fc.integer({ min: -10_000_000, max: 10_000_000 }),
        (from, to, total, r, balance) => {
          const charge = Math.max(0, prorationDelta(from, to, r % (total + 1), total));
          const payable = payableAfterCredit(charge, balance);
          // The quote shows `mpesaAmountCents(payable)`, M-Pesa is asked it, the charge is `charge`.
          expect(mpesaAmountCents(payable)).toBe(payable);
          expect([0, charge]).toContain(payable);
          if (payable === 0) expect(charge === 0 || balance >= charge).toBe(true);
          // Paid and charged, the balance is where it was, or less exactly the charge when credit paid
          // it: no cent appears that the quote did not show.
          const after = balance + payable - charge;
          expect(after).toBe(payable === charge ? balance : balance - charge);
        },
      ),
    );
  });

  it("other amounts are asked rounded up to the shilling, never less than owed", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100_000_000 }), (owed) => {
        const asked = mpesaAmountCents(owed);
        expect(asked % 100).toBe(0);
        expect(asked - owed).toBeGreaterThanOrEqual(0);
        expect(asked - owed).toBeLessThan(100);
      }),
    );
  });
});

describe("amounts people type and read", () => {
  it("parses shillings into cents and refuses what is not money", () => {
    expect(parseShillings("1,500")).toBe(150_000);
    expect(parseShillings(" 99.5 ")).toBe(9_950);
    expect(parseShillings("10.05")).toBe(1_005);
    expect(parseShillings("1,500,000.50")).toBe(150_000_050);
    for (const bad of ["", "abc", "-5", "1.234", "1e3", "12 34"]) expect(parseShillings(bad)).toBeNull();
  });

  it("takes a comma as a thousands separator only: a misplaced one is refused, not read as thousands", () => {
    for (const slip of ["10,00", "1,5000", ",500", "1,50", "1500,", "1,500,00", "10,00.50"])
      expect(parseShillings(slip)).toBeNull();
  });

  it("round-trips any amount through formatting and parsing", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 99_999_999_999 }), (amount) => {
        expect(parseShillings(formatKes(amount).replace("KES ", ""))).toBe(amount);
      }),
    );
  });
});
