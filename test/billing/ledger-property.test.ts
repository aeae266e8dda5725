import { eq, sql } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getAccountSummary } from "../../src/billing/accounts.ts";
import { adjustBalance } from "../../src/billing/adjust.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import { invoices } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, job, ledgerSum, uniquePhone } from "../support/billing.ts";
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
  | { kind: "time"; days: number };

describe("the ledger under random invoices and payments", () => {
  it("balance = sum of entries = payments + credits - invoices, and bills are settled oldest due first from exactly that", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-10-01T00:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 123_457, periodUnit: "days", periodCount: 7 });
    let run = 0;
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ kind: fc.constant("pay" as const), cents: fc.integer({ min: 1, max: 400_000 }) }),
      fc.record({ kind: fc.constant("time" as const), days: fc.integer({ min: 1, max: 9 }) }),
      // Corrections: a credit pays like money received; a charge is a bill due now, which can be due
      // before the next period's bill issued ahead and already holding money.
      fc.record({
        kind: fc.constantFrom("credit" as const, "charge" as const),
        cents: fc.integer({ min: 1, max: 200_000 }),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 14 }), async (steps) => {
        clock.set("2026-10-01T00:00:00Z");
        const { customer } = await createCustomerWithSubscription(ctx, admin, {
          name: "Prop",
          phone: uniquePhone(),
          planId: plan.id,
        });
        let paid = 0;
        for (const s of steps) {
          if (s.kind === "pay") {
            run++;
            await applyPayment(ctx, admin, {
              customerId: customer.id,
              method: "cash",
              provider: "cash",
              providerRef: `prop-${run}`,
              amountCents: s.cents,
            });
            paid += s.cents;
          } else if (s.kind === "credit" || s.kind === "charge") {
            const amountCents = s.kind === "credit" ? s.cents : -s.cents;
            await adjustBalance(ctx, admin, { customerId: customer.id, amountCents, reason: "property" });
            if (s.kind === "credit") paid += s.cents;
          } else {
            clock.advance(s.days * DAY);
            await issueRecurringInvoices(ctx, job);
          }
          const mine = await database.db
            .select()
            .from(invoices)
            .where(eq(invoices.customerId, customer.id))
            .orderBy(invoices.dueAt, invoices.id);
          const invoiced = mine.reduce((sum, i) => sum + i.amountCents, 0);
          const balance = await ledgerSum(database.db, customer.id);
          expect(balance).toBe(paid - invoiced);
          expect((await getAccountSummary(database.db, customer.id, clock.now())).balanceCents).toBe(balance);
          // Allocations: everything paid is allocated until the invoices are covered, oldest due first.
          const allocated = mine.reduce((sum, i) => sum + i.paidCents, 0);
          expect(allocated).toBe(Math.min(paid, invoiced));
          // Bills of service not settled for good (open, or paid and not due yet) hold money oldest due
          // first; corrections take only what they leave over (none while one of them is open).
          const service = mine.filter(
            (i) => i.kind !== "manual" && (i.status === "open" || i.dueAt > clock.now()),
          );
          const firstOpen = service.findIndex((i) => i.status === "open");
          if (firstOpen >= 0) {
            for (const later of service.slice(firstOpen + 1)) expect(later.paidCents).toBe(0);
            expect(balance).toBeLessThanOrEqual(0);
          }
          for (const i of mine) expect(i.status === "paid").toBe(i.paidCents === i.amountCents);
        }
        const [entries] = await queryRows<{ n: number }>(
          database.db,
          sql`select count(*)::int as n from ledger_entries where customer_id = ${customer.id} and kind = 'payment'`,
        );
        expect(Number(entries!.n)).toBe(steps.filter((s) => s.kind === "pay").length);
      }),
      {
        numRuns: 25,
        // The cases that matter most, always tried: the first period paid, the next one's bill issued
        // ahead and partly paid, or paid in full, then a correction due now, before it.
        examples: [
          [
            [
              { kind: "pay", cents: 123_457 },
              { kind: "time", days: 4 },
              { kind: "pay", cents: 1_000 },
              { kind: "charge", cents: 500 },
            ],
          ],
          [
            [
              { kind: "credit", cents: 20_511 },
              { kind: "pay", cents: 226_403 },
              { kind: "time", days: 3 },
              { kind: "charge", cents: 1 },
            ],
          ],
        ],
      },
    );
  }, 120_000);
});
