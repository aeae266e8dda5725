import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { adjustBalance } from "../../src/billing/adjust.ts";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import type { BillingContext } from "../../src/billing/context.ts";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { billingJobs } from "../../src/billing/jobs.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { assignUnmatchedPayment } from "../../src/billing/unmatched.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import { queryRows } from "../../src/db/client.ts";
import { payments, subscriptions } from "../../src/db/schema/index.ts";
import { runJob } from "../../src/jobs/runner.ts";
import { activeSubscriber, admin, createPlan, uniquePhone } from "../support/billing.ts";
import { onRealPostgres } from "../support/db.ts";
import {
  balances,
  inconsistentAccounts,
  inWaves,
  none,
  paymentTotals,
  postC2b,
  postJson,
  summary,
  twoInstances,
  uncredited,
} from "./money-races-support.ts";

/**
 * Distinct payments for one account arriving at the same moment, on two instances of the service
 * sharing one PostgreSQL database: every shilling paid must be credited once, and the invoices must
 * agree with the ledger afterwards. Races only happen on a real server (PGlite runs one statement at
 * a time), so these run only under TEST_DATABASE_URL.
 */
describe.runIf(onRealPostgres())("money under concurrency (two instances, PostgreSQL)", () => {
  const KES = 100;

  /** Customers who each owe `priceCents` on the open first invoice of a pending subscription. */
  async function debtors(ctx: BillingContext, n: number, priceCents: number) {
    const plan = await createPlan(ctx.db, { priceCents });
    return inWaves(n, 10, async (i) => {
      const created = await createCustomerWithSubscription(ctx, admin, {
        name: `Debtor ${i}`,
        phone: uniquePhone(),
        planId: plan.id,
      });
      return { ...created.customer, subscriptionId: created.subscription.id };
    });
  }

  it("100 pairs of different paybill confirmations to one account, at once: all 200 credited", async () => {
    const clock = new FakeClock("2026-03-02T07:00:00Z");
    const w = await twoInstances(clock);
    try {
      const owing = await debtors(w.a.ctx, 100, 1_500 * KES);
      // Each pair: two receipts of KES 1,000 for an account owing KES 1,500, one to each instance.
      const statuses = await inWaves(owing.length, 10, (i) =>
        Promise.all(
          [w.a.h, w.b.h].map((h, k) =>
            postC2b(h, clock, { transId: `RA${i}X${k}`, account: owing[i]!.accountNumber, shillings: 1_000 }),
          ),
        ),
      );
      const expected = owing.flatMap((c, i) =>
        [0, 1].map((k) => ({ receipt: `RA${i}X${k}`, customerId: c.id })),
      );
      const ids = owing.map((c) => c.id);
      const failed = statuses.flat().filter((s) => s >= 500).length;
      const lost = await uncredited(w.database.db, expected);
      const totals = await paymentTotals(w.database.db, ids);
      const inconsistent = await inconsistentAccounts(w.database.db, ids);
      const stillPending = await queryRows<{ n: number }>(
        w.database.db,
        sql`select count(*)::int as n from subscriptions
            where id = any(${`{${owing.map((c) => c.subscriptionId).join(",")}}`}::int[]) and status <> 'active'`,
      );
      expect({
        answeredWith5xx: failed,
        uncredited: summary(lost),
        credits: totals,
        inconsistent: summary(inconsistent),
        // KES 2,000 paid against KES 1,500 owed: the subscription is active.
        notActive: Number(stillPending[0]?.n ?? 0),
      }).toEqual({
        answeredWith5xx: 0,
        uncredited: none,
        credits: { count: 200, cents: 200 * 1_000 * KES },
        inconsistent: none,
        notActive: 0,
      });
    } finally {
      await w.close();
    }
  });

  it("payments committing while the invoice run issues the invoices they pay: paid, never reminded or suspended", async () => {
    const start = new Date("2026-03-02T07:00:00Z").getTime();
    const clock = new FakeClock(new Date(start));
    const w = await twoInstances(clock);
    try {
      const ROUNDS = 5;
      const PER_ROUND = 40;
      const price = 1_000 * KES;
      const plan = await createPlan(w.database.db, { priceCents: price });
      // One group of active subscribers per round, signed up 5 days apart: each invoice run (96 h
      // ahead) issues the next invoice of one group only.
      const groups = [];
      for (let r = 0; r < ROUNDS; r++) {
        clock.set(new Date(start + r * 5 * DAY));
        groups.push(
          await inWaves(PER_ROUND, 10, (i) => activeSubscriber(w.a.ctx, plan.id, `Round ${r}.${i}`)),
        );
      }
      const invoicing = billingJobs.find((j) => j.name === "invoicing")!;
      const runs = [];
      const statuses: number[] = [];
      for (const [r, group] of groups.entries()) {
        const periodEnd = group[0]!.subscription.currentPeriodEnd.getTime();
        clock.set(new Date(periodEnd - DAY));
        // The scheduler's invoice run on instance A while the group pays the coming invoice by paybill
        // on instance B.
        const [run, answered] = await Promise.all([
          runJob(w.database.db, clock, "invoicing", (tx) => invoicing.run(tx, w.a.ctx)),
          Promise.all(
            group.map(({ customer }, i) =>
              postC2b(w.b.h, clock, {
                transId: `RB${r}X${i}`,
                account: customer.accountNumber,
                shillings: 1_000,
              }),
            ),
          ),
        ]);
        runs.push(run.status);
        statuses.push(...answered);
      }

      // Past the last due date and the grace day, the scheduler runs the billing jobs.
      const lastDue = groups.at(-1)![0]!.subscription.currentPeriodEnd.getTime();
      clock.set(new Date(lastDue + w.a.ctx.settings.graceDays * DAY + HOUR));
      for (const name of ["invoicing", "reminders", "suspensions"]) {
        const job = billingJobs.find((j) => j.name === name)!;
        runs.push((await runJob(w.database.db, clock, name, (tx) => job.run(tx, w.a.ctx))).status);
      }

      const everyone = groups.flat();
      const ids = everyone.map((s) => s.customer.id);
      const idList = sql`${`{${ids.join(",")}}`}::int[]`;
      const expected = groups.flatMap((group, r) =>
        group.map(({ customer }, i) => ({ receipt: `RB${r}X${i}`, customerId: customer.id })),
      );
      // Customers whose balance covers everything, yet with an invoice left open.
      const unpaid = await queryRows<{ customer_id: number; status: string; balance: string }>(
        w.database.db,
        sql`select i.customer_id, i.status,
              (select sum(l.amount_cents) from ledger_entries l where l.customer_id = i.customer_id)::text as balance
            from invoices i join subscriptions s on s.id = i.subscription_id
            where s.customer_id = any(${idList}) and i.status <> 'paid'
              and (select sum(l.amount_cents) from ledger_entries l where l.customer_id = i.customer_id) >= 0`,
      );
      const reminded = await queryRows<{ recipient: string; template: string }>(
        w.database.db,
        sql`select m.recipient, m.template from message_outbox m join customers c on c.phone = m.recipient
            where c.id = any(${idList}) and m.template in ('invoice_reminder', 'suspended')`,
      );
      const cutOff = await queryRows<{ id: number; status: string }>(
        w.database.db,
        sql`select id, status from subscriptions where customer_id = any(${idList}) and status <> 'active'`,
      );
      expect({
        runs: runs.filter((s) => s !== "ok"),
        answeredWith5xx: statuses.filter((s) => s >= 500).length,
        uncredited: summary(await uncredited(w.database.db, expected)),
        paidButInvoiceOpen: summary(
          unpaid.map((u) => `customer ${u.customer_id}: balance ${u.balance}, ${u.status}`),
        ),
        remindedOrToldSuspended: summary(reminded.map((m) => `${m.template} to ${m.recipient}`)),
        suspended: summary(cutOff.map((s) => `subscription ${s.id}: ${s.status}`)),
        inconsistent: summary(await inconsistentAccounts(w.database.db, ids)),
      }).toEqual({
        runs: [],
        answeredWith5xx: 0,
        uncredited: none,
        paidButInvoiceOpen: none,
        remindedOrToldSuspended: none,
        suspended: none,
        inconsistent: none,
      });
    } finally {
      await w.close();
    }
  });

  // Before the one-writer rule (money-lock.ts) this pair was already serialized, by accident: the
  // STK credit locks the customer row FOR UPDATE, which waits for (and is waited for by) the foreign
  // key lock the paybill's payment insert takes on the same row. Kept so that it stays true.
  it("an STK callback and a paybill confirmation for one customer at the same moment: both credited", async () => {
    const clock = new FakeClock("2026-03-02T07:00:00Z");
    const w = await twoInstances(clock);
    try {
      const owing = await debtors(w.a.ctx, 50, 1_500 * KES);
      // A pending KES 1,000 push per customer, sent to the fake (which never calls back by itself).
      // The paybill payment is KES 700: M-Pesa refuses the same amount from one payer to one
      // receiver within two minutes, so a paybill confirmation of the push's amount moments after it
      // would be the push's own (which the service may take it for).
      for (const c of owing) {
        const asked = await requestPayment(
          w.a.ctx,
          { kind: "subscriber", id: c.phone },
          { phone: c.phone, purpose: "balance", amountCents: 1_000 * KES, customerId: c.id, channel: "test" },
        );
        if (!asked.ok) throw new Error(asked.message);
      }
      while ((await w.a.h.dispatcher.runOnce()) > 0) {}
      const pushes = new Map(w.a.h.fake.pushes.map((p) => [`+${p.msisdn}`, p]));
      const receipts = owing.map((c) => pushes.get(c.phone)?.receipt ?? null);
      expect({ pushed: receipts.filter((r) => r !== null).length }).toEqual({ pushed: owing.length });

      const statuses = await inWaves(owing.length, 10, (i) =>
        Promise.all([
          postJson(w.a.h.stkUrl, pushes.get(owing[i]!.phone)!.body),
          postC2b(w.b.h, clock, { transId: `RC${i}`, account: owing[i]!.accountNumber, shillings: 700 }),
        ]),
      );
      const expected = owing.flatMap((c, i) => [
        { receipt: receipts[i]!, customerId: c.id },
        { receipt: `RC${i}`, customerId: c.id },
      ]);
      const ids = owing.map((c) => c.id);
      const intents = await queryRows<{ status: string; n: number }>(
        w.database.db,
        sql`select status, count(*)::int as n from payment_intents group by status`,
      );
      expect({
        answeredWith5xx: statuses.flat().filter((s) => s >= 500).length,
        uncredited: summary(await uncredited(w.database.db, expected)),
        credits: await paymentTotals(w.database.db, ids),
        intents: Object.fromEntries(intents.map((r) => [r.status, Number(r.n)])),
        inconsistent: summary(await inconsistentAccounts(w.database.db, ids)),
      }).toEqual({
        answeredWith5xx: 0,
        uncredited: none,
        credits: { count: 100, cents: 50 * (1_000 + 700) * KES },
        intents: { succeeded: 50 },
        inconsistent: none,
      });
    } finally {
      await w.close();
    }
  });

  it("an admin assigning an unmatched payment while another payment for the account arrives: both credited", async () => {
    const clock = new FakeClock("2026-03-02T07:00:00Z");
    const w = await twoInstances(clock);
    try {
      const owing = await debtors(w.a.ctx, 50, 1_500 * KES);
      // KES 1,000 each, paid to an account number nobody has: it waits in the unmatched queue.
      await inWaves(owing.length, 10, (i) =>
        postC2b(w.a.h, clock, { transId: `RU${i}`, account: `TYPO${i}`, shillings: 1_000 }),
      );
      const queued = new Map(
        (
          await w.database.db
            .select({ id: payments.id, ref: payments.providerRef })
            .from(payments)
            .where(eq(payments.status, "unmatched"))
        ).map((p) => [p.ref, p.id]),
      );
      expect(queued.size).toBe(owing.length);

      // The admin (instance A) places each one on the right account as the customer pays again by
      // paybill (instance B).
      const outcomes = await inWaves(owing.length, 10, (i) =>
        Promise.allSettled([
          assignUnmatchedPayment(w.a.ctx, admin, {
            paymentId: queued.get(`RU${i}`)!,
            accountNumber: owing[i]!.accountNumber,
          }),
          postC2b(w.b.h, clock, { transId: `RD${i}`, account: owing[i]!.accountNumber, shillings: 1_000 }),
        ]),
      );
      const refused = outcomes.flatMap(([assigned]) => {
        if (assigned.status === "fulfilled") return [];
        // The database's own words (drizzle wraps them with the whole query text).
        const error = assigned.reason as { message?: string; cause?: { message?: string } };
        return [String(error?.cause?.message ?? error?.message ?? error).slice(0, 160)];
      });
      const answered = outcomes.map(([, posted]) => (posted.status === "fulfilled" ? posted.value : 0));
      const expected = owing.flatMap((c, i) => [
        { receipt: `RU${i}`, customerId: c.id },
        { receipt: `RD${i}`, customerId: c.id },
      ]);
      const ids = owing.map((c) => c.id);
      expect({
        assignmentsFailed: summary(refused, 3),
        answeredWith5xxOrNot: answered.filter((s) => s === 0 || s >= 500).length,
        uncredited: summary(await uncredited(w.database.db, expected)),
        credits: await paymentTotals(w.database.db, ids),
        inconsistent: summary(await inconsistentAccounts(w.database.db, ids)),
      }).toEqual({
        assignmentsFailed: none,
        answeredWith5xxOrNot: 0,
        uncredited: none,
        credits: { count: 100, cents: 100 * 1_000 * KES },
        inconsistent: none,
      });
    } finally {
      await w.close();
    }
  });
  it("plan upgrades and cancellations committing while payments for the same accounts arrive: both count", async () => {
    const clock = new FakeClock("2026-03-02T07:00:00Z");
    const w = await twoInstances(clock);
    try {
      const basic = await createPlan(w.a.ctx.db, { priceCents: 1_500 * KES });
      const premium = await createPlan(w.a.ctx.db, { priceCents: 3_000 * KES });
      const subscribers = await inWaves(40, 10, (i) =>
        activeSubscriber(w.a.ctx, basic.id, `Subscriber ${i}`),
      );
      // Ten days into the period: an upgrade charges the rest of it at the difference.
      clock.advance(10 * DAY);
      const upgrading = (i: number) => i % 2 === 0;

      // The admin (instance A) upgrades or cancels each as the customer pays by paybill (instance B).
      const outcomes = await inWaves(subscribers.length, 10, (i) => {
        const { customer, subscription } = subscribers[i]!;
        return Promise.allSettled([
          upgrading(i)
            ? changePlan(w.a.ctx, admin, { subscriptionId: subscription.id, planId: premium.id })
            : cancelSubscription(w.a.ctx, admin, { subscriptionId: subscription.id, reason: "moving away" }),
          postC2b(w.b.h, clock, { transId: `RP${i}`, account: customer.accountNumber, shillings: 1_000 }),
        ]);
      });
      const refused = outcomes.flatMap(([changed]) => {
        if (changed.status === "fulfilled") return [];
        const error = changed.reason as { message?: string; cause?: { message?: string } };
        return [String(error?.cause?.message ?? error?.message ?? error).slice(0, 160)];
      });
      const answered = outcomes.map(([, posted]) => (posted.status === "fulfilled" ? posted.value : 0));
      const ids = subscribers.map((s) => s.customer.id);
      const ended = await w.database.db
        .select({ id: subscriptions.id, planId: subscriptions.planId, status: subscriptions.status })
        .from(subscriptions);
      const byId = new Map(ended.map((s) => [s.id, s]));
      const wrongState = subscribers.filter(({ subscription }, i) => {
        const now = byId.get(subscription.id);
        return upgrading(i) ? now?.planId !== premium.id : now?.status !== "cancelled";
      });
      expect({
        changesFailed: summary(refused, 3),
        answeredWith5xxOrNot: answered.filter((s) => s === 0 || s >= 500).length,
        uncredited: summary(
          await uncredited(
            w.database.db,
            subscribers.map((s, i) => ({ receipt: `RP${i}`, customerId: s.customer.id })),
          ),
        ),
        wrongState: wrongState.length,
        // An upgrade's charge is paid from the payment whichever committed first; what a
        // cancellation returns is credit either way.
        inconsistent: summary(await inconsistentAccounts(w.database.db, ids)),
      }).toEqual({
        changesFailed: none,
        answeredWith5xxOrNot: 0,
        uncredited: none,
        wrongState: 0,
        inconsistent: none,
      });
    } finally {
      await w.close();
    }
  });

  it("balance corrections committing while payments for the same accounts arrive: both count", async () => {
    const clock = new FakeClock("2026-03-02T07:00:00Z");
    const w = await twoInstances(clock);
    try {
      const owing = await debtors(w.a.ctx, 40, 1_500 * KES);
      const before = await balances(
        w.database.db,
        owing.map((c) => c.id),
      );
      // Half are credited KES 700, half charged KES 300, by an admin (instance A) while each pays
      // KES 1,000 by paybill (instance B).
      const correction = (i: number) => (i % 2 === 0 ? 700 * KES : -300 * KES);
      const outcomes = await inWaves(owing.length, 10, (i) =>
        Promise.allSettled([
          adjustBalance(w.a.ctx, admin, {
            customerId: owing[i]!.id,
            amountCents: correction(i),
            reason: "race",
          }),
          postC2b(w.b.h, clock, { transId: `RJ${i}`, account: owing[i]!.accountNumber, shillings: 1_000 }),
        ]),
      );
      const ids = owing.map((c) => c.id);
      const after = await balances(w.database.db, ids);
      const wrongBalance = owing.filter(
        (c, i) => after.get(c.id) !== before.get(c.id)! + correction(i) + 1_000 * KES,
      );
      // KES 1,000 paid and KES 700 credited cover the KES 1,500 first invoice: service starts.
      const pending = await w.database.db
        .select({ id: subscriptions.id, status: subscriptions.status })
        .from(subscriptions);
      const statusOf = new Map(pending.map((s) => [s.id, s.status]));
      const notStarted = owing.filter((c, i) => i % 2 === 0 && statusOf.get(c.subscriptionId) !== "active");
      expect({
        failed: outcomes.flat().filter((o) => o.status === "rejected").length,
        answeredWith5xx: outcomes.filter(([, posted]) => posted.status === "fulfilled" && posted.value >= 500)
          .length,
        wrongBalance: wrongBalance.length,
        creditedButNotStarted: notStarted.length,
        inconsistent: summary(await inconsistentAccounts(w.database.db, ids)),
      }).toEqual({
        failed: 0,
        answeredWith5xx: 0,
        wrongBalance: 0,
        creditedButNotStarted: 0,
        inconsistent: none,
      });
    } finally {
      await w.close();
    }
  });
});
