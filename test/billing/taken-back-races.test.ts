import { describe, expect, it } from "vitest";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import { activeSubscriber, admin, anotherSubscription, createPlan, job } from "../support/billing.ts";
import { onRealPostgres } from "../support/db.ts";
import {
  balances,
  inconsistentAccounts,
  inWaves,
  none,
  postC2b,
  summary,
  twoInstances,
  uncredited,
} from "./money-races-support.ts";

/**
 * A cancellation that takes back a credit already spent on a bill now due opens that bill again,
 * while the customer's payment arrives on another instance: whichever commits first, the payment
 * counts once and the open bills show what the ledger says is owed. Only a real server races.
 */
describe.runIf(onRealPostgres())(
  "a credit taken back while a payment arrives (two instances, PostgreSQL)",
  () => {
    const KES = 100;

    it("cancellations opening paid bills again as paybill payments for the same accounts arrive: both count", async () => {
      const clock = new FakeClock("2026-08-01T00:00:00Z");
      const w = await twoInstances(clock);
      try {
        const ctx = w.a.ctx;
        const basic = await createPlan(ctx.db, {
          priceCents: 1_000 * KES,
          periodUnit: "days",
          periodCount: 30,
        });
        const fast = await createPlan(ctx.db, {
          priceCents: 2_000 * KES,
          periodUnit: "days",
          periodCount: 30,
        });
        // B on the basic plan, then A on the fast one a day later, paid: B's bills fall due first.
        const bs = await inWaves(20, 10, (i) => activeSubscriber(ctx, basic.id, `Subscriber ${i}`));
        clock.advance(DAY);
        const as = await inWaves(bs.length, 10, async (i) => {
          const customerId = bs[i]!.customer.id;
          const subscription = await anotherSubscription(ctx, customerId, fast, `race-a-${customerId}`);
          await applyPayment(ctx, admin, {
            customerId,
            method: "cash",
            provider: "cash",
            providerRef: `race-a-${customerId}`,
            amountCents: fast.priceCents,
          });
          return subscription;
        });
        clock.advance(27 * DAY);
        await issueRecurringInvoices(ctx, job);
        // Each downgrade's KES 1,000 credit pays B's next period, which then starts.
        await inWaves(as.length, 10, (i) =>
          changePlan(ctx, admin, { subscriptionId: as[i]!.id, planId: basic.id }),
        );
        clock.set(new Date(bs[0]!.subscription.currentPeriodEnd.getTime() + 12 * HOUR));
        await issueRecurringInvoices(ctx, job);

        const outcomes = await inWaves(bs.length, 10, (i) =>
          Promise.allSettled([
            cancelSubscription(ctx, admin, { subscriptionId: as[i]!.id, reason: "moving away" }),
            postC2b(w.b.h, clock, {
              transId: `TB${i}`,
              account: bs[i]!.customer.accountNumber,
              shillings: 400,
            }),
          ]),
        );
        const ids = bs.map((b) => b.customer.id);
        const owed = await balances(w.database.db, ids);
        expect({
          cancelsFailed: outcomes.filter(([cancelled]) => cancelled.status === "rejected").length,
          answeredWith5xxOrNot: outcomes.filter(
            ([, posted]) => posted.status !== "fulfilled" || posted.value >= 500,
          ).length,
          uncredited: summary(
            await uncredited(
              w.database.db,
              bs.map((b, i) => ({ receipt: `TB${i}`, customerId: b.customer.id })),
            ),
          ),
          // KES 1,000 owed again on B's bill, KES 400 of it paid.
          owing: [...new Set(ids.map((id) => owed.get(id)))],
          inconsistent: summary(await inconsistentAccounts(w.database.db, ids)),
        }).toEqual({
          cancelsFailed: 0,
          answeredWith5xxOrNot: 0,
          uncredited: none,
          owing: [-600 * KES],
          inconsistent: none,
        });
      } finally {
        await w.close();
      }
    });
  },
);
