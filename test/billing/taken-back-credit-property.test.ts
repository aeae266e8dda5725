import { eq } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adjustBalance } from "../../src/billing/adjust.ts";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import { BillingError } from "../../src/billing/context.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { invoices } from "../../src/db/schema/index.ts";
import {
  activeSubscriber,
  admin,
  anotherSubscription,
  billingContext,
  createPlan,
  job,
  ledgerSum,
} from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

type Step =
  | { kind: "pay"; cents: number }
  | { kind: "credit"; cents: number }
  | { kind: "charge"; cents: number }
  | { kind: "time"; days: number }
  | { kind: "switch" }
  | { kind: "cancel" };

/**
 * Credit is taken back when a subscription is cancelled after a downgrade credited its next
 * period: the credit may have paid other bills by then, due or not. Whatever happened before, what
 * the open bills ask for is what the ledger says is owed: dunning and reminders, which read bills,
 * ask for exactly the debt.
 */
describe("credit given and taken back among payments, corrections and the passing of time", () => {
  it("the open bills' outstanding always equals what the ledger says is owed", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-11-01T00:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 100_000, periodUnit: "days", periodCount: 7 });
    const fast = await createPlan(database.db, { priceCents: 200_000, periodUnit: "days", periodCount: 7 });
    let run = 0;
    const pay = (customerId: number, amountCents: number) => {
      run++;
      return applyPayment(ctx, admin, {
        customerId,
        method: "cash",
        provider: "cash",
        providerRef: `taken-back-${run}`,
        amountCents,
      });
    };
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ kind: fc.constant("pay" as const), cents: fc.integer({ min: 1, max: 300_000 }) }),
      fc.record({ kind: fc.constant("time" as const), days: fc.integer({ min: 1, max: 5 }) }),
      fc.record({
        kind: fc.constantFrom("credit" as const, "charge" as const),
        cents: fc.integer({ min: 1, max: 150_000 }),
      }),
      // A plan change of A, to the other plan: a downgrade credits A's next period when it is issued.
      fc.constant({ kind: "switch" as const }),
      fc.constant({ kind: "cancel" as const }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 14 }), async (steps) => {
        clock.set("2026-11-01T00:00:00Z");
        // B on the basic plan; A on the fast one a day later, both paid: B's bills fall due first.
        const { customer } = await activeSubscriber(ctx, basic.id);
        clock.advance(DAY);
        const a = await anotherSubscription(ctx, customer.id, fast, `a-${customer.id}`);
        await pay(customer.id, fast.priceCents);
        let planOfA = fast.id;
        for (const s of steps) {
          if (s.kind === "pay") await pay(customer.id, s.cents);
          else if (s.kind === "credit" || s.kind === "charge") {
            const amountCents = s.kind === "credit" ? s.cents : -s.cents;
            await adjustBalance(ctx, admin, { customerId: customer.id, amountCents, reason: "property" });
          } else if (s.kind === "time") {
            clock.advance(s.days * DAY);
            await issueRecurringInvoices(ctx, job);
          } else if (s.kind === "switch") {
            const to = planOfA === fast.id ? basic.id : fast.id;
            try {
              await changePlan(ctx, admin, { subscriptionId: a.id, planId: to });
              planOfA = to;
            } catch (error) {
              // Refused (A cancelled already, say): nothing changed.
              if (!(error instanceof BillingError)) throw error;
            }
          } else {
            await cancelSubscription(ctx, admin, { subscriptionId: a.id, reason: "property" });
          }
          const mine = await database.db.select().from(invoices).where(eq(invoices.customerId, customer.id));
          const open = mine.filter((i) => i.status === "open");
          const owed = Math.max(0, -(await ledgerSum(database.db, customer.id)));
          expect(open.reduce((sum, i) => sum + i.amountCents - i.paidCents, 0)).toBe(owed);
          for (const i of mine) {
            expect(i.paidCents).toBeGreaterThanOrEqual(0);
            expect(i.paidCents).toBeLessThanOrEqual(i.amountCents);
            if (i.status !== "void") expect(i.status === "paid").toBe(i.paidCents === i.amountCents);
          }
        }
      }),
      {
        numRuns: 25,
        examples: [
          // The downgrade's credit pays B's next period, which falls due before A is cancelled.
          [[{ kind: "time", days: 3 }, { kind: "switch" }, { kind: "time", days: 3 }, { kind: "cancel" }]],
        ],
      },
    );
  }, 240_000);
});
