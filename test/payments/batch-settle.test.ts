import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../../src/billing/context.ts";
import { markIntentSent } from "../../src/billing/intents/dispatch.ts";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { type SettleOutcome, type StkResult, settleStkResult } from "../../src/billing/intents/settle.ts";
import { settleStkResults } from "../../src/billing/intents/settle-batch.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { admin, billingContext, createPlan, ledgerSum, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const webhook: Actor = { kind: "webhook", id: "mpesa" };
type Event = { intent: number; kind: "paid" | "wrong_amount" | "cancelled" | "wrong_pin" | "unknown" };

describe("settling STK callbacks in batches", () => {
  it("gives the same outcomes and the same ledger as settling them one by one", async () => {
    const clock = new FakeClock("2026-11-20T08:00:00Z");
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    let world = 0;

    /** Three customers with a pending STK intent each; returns what a callback needs. */
    async function makeWorld() {
      world++;
      const made = [];
      for (let i = 0; i < 3; i++) {
        const phone = uniquePhone();
        const { customer } = await createCustomerWithSubscription(ctx, admin, {
          name: `W${world}-${i}`,
          phone,
          planId: plan.id,
        });
        const requested = await requestPayment(ctx, admin, {
          phone,
          purpose: "balance",
          amountCents: 50_000 + i * 10_000,
          customerId: customer.id,
          channel: "test",
        });
        if (!requested.ok) throw new Error(requested.message);
        const checkoutRequestId = `ws_CO_W${world}_${i}`;
        await markIntentSent(ctx, {
          intentId: requested.intentId,
          merchantRequestId: `m-${world}-${i}`,
          checkoutRequestId,
        });
        made.push({ customerId: customer.id, checkoutRequestId, amountCents: 50_000 + i * 10_000 });
      }
      return made;
    }

    function toResult(w: Awaited<ReturnType<typeof makeWorld>>, event: Event, tag: string): StkResult {
      const target = w[event.intent]!;
      const codes = { paid: 0, wrong_amount: 0, cancelled: 1032, wrong_pin: 2001, unknown: 0 } as const;
      const outcomes = {
        paid: "paid",
        wrong_amount: "paid",
        cancelled: "cancelled",
        wrong_pin: "declined",
        unknown: "paid",
      } as const;
      return {
        checkoutRequestId: event.kind === "unknown" ? `ws_CO_nobody_${tag}` : target.checkoutRequestId,
        outcome: outcomes[event.kind],
        reason: event.kind,
        providerCode: codes[event.kind],
        receipt:
          codes[event.kind] === 0
            ? `${tag}R${event.intent}${event.kind === "wrong_amount" ? "X" : ""}`
            : null,
        amountCents: event.kind === "wrong_amount" ? target.amountCents + 100 : target.amountCents,
        source: "callback",
        raw: {},
      };
    }

    const event = fc.record({
      intent: fc.integer({ min: 0, max: 2 }),
      kind: fc.constantFrom(
        "paid" as const,
        "paid" as const,
        "wrong_amount" as const,
        "cancelled" as const,
        "wrong_pin" as const,
        "unknown" as const,
      ),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(event, { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 6 }),
        async (events, batchSize) => {
          const batched = await makeWorld();
          const single = await makeWorld();
          const tagA = `A${world}`;
          const tagB = `B${world}`;
          const batchedOutcomes: SettleOutcome[] = [];
          for (let i = 0; i < events.length; i += batchSize) {
            const chunk = events.slice(i, i + batchSize).map((e) => toResult(batched, e, tagA));
            batchedOutcomes.push(...(await settleStkResults(ctx, webhook, chunk)));
          }
          const singleOutcomes: SettleOutcome[] = [];
          for (const e of events)
            singleOutcomes.push(await settleStkResult(ctx, webhook, toResult(single, e, tagB)));
          expect(batchedOutcomes.map((o) => o.status)).toEqual(singleOutcomes.map((o) => o.status));
          for (let i = 0; i < 3; i++) {
            expect(await ledgerSum(database.db, batched[i]!.customerId)).toBe(
              await ledgerSum(database.db, single[i]!.customerId),
            );
          }
        },
      ),
      { numRuns: 20 },
    );
  });
});
