/**
 * B1: issue invoices for 100,000 subscriptions with the set-based invoice run, against a
 * per-subscription loop (one transaction and a handful of statements per subscription, the way
 * a naive billing script does it) on a 10,000 subset. The ratio compares per-subscription rates.
 */
import { sql } from "drizzle-orm";
import { defaultBillingSettings, systemActor } from "../src/billing/context.ts";
import { issueRecurringInvoices } from "../src/billing/invoicing.ts";
import { oneCustomer, postLedgerEntry, settleOpenInvoices } from "../src/billing/ledger.ts";
import { lockSubscriptionCustomer } from "../src/billing/money-lock.ts";
import { periodBoundary } from "../src/billing/periods.ts";
import { FakeClock } from "../src/clock.ts";
import { type Db, queryRows } from "../src/db/client.ts";
import { invoiceLines, invoices } from "../src/db/schema/index.ts";
import { createBenchDatabase, round } from "./support.ts";

const SET_BASED = 100_000;
const BASELINE = 10_000;
const now = new Date("2026-11-28T09:00:00Z");

async function seed(db: Db, from: number, count: number, periodEnd: Date) {
  const start = new Date(periodEnd.getTime() - 30 * 86_400_000);
  await db.execute(sql`
    insert into customers (account_number, phone, name)
    select 'B' || g, '+2547' || lpad(g::text, 8, '0'), 'Subscriber ' || g
    from generate_series(${from}::int, ${from + count - 1}::int) g`);
  await db.execute(sql`
    insert into subscriptions (customer_id, plan_id, network_username, network_password, status,
      current_period_start, current_period_end, billing_anchor, period_index)
    select c.id, (select id from plans where code = 'home-10'), lower(c.account_number), 'pw', 'active',
      ${start.toISOString()}::timestamptz, ${periodEnd.toISOString()}::timestamptz, ${start.toISOString()}::timestamptz, 0
    from customers c where c.account_number like 'B%' and substring(c.account_number from 2)::int between ${from} and ${from + count - 1}`);
}

/** The baseline: one subscription at a time, each in its own transaction. */
async function invoiceOneByOne(db: Db, clock: FakeClock): Promise<number> {
  const due = await queryRows<{ id: number }>(
    db,
    sql`select s.id from subscriptions s where s.status = 'active' and s.current_period_end <= ${new Date(now.getTime() + 96 * 3_600_000).toISOString()}::timestamptz
        and not exists (select 1 from invoices i where i.subscription_id = s.id and i.period_start = s.current_period_end) order by s.id`,
  );
  for (const { id } of due) {
    await db.transaction(async (tx) => {
      // The same one-writer rule as the set-based run: the customer's money first, then the rest.
      const money = await lockSubscriptionCustomer(tx, id);
      const [row] = await queryRows<Record<string, string>>(
        tx,
        sql`select s.id, s.customer_id, s.current_period_end, s.billing_anchor, s.period_index, p.price_cents, p.name, p.period_unit, p.period_count
            from subscriptions s join plans p on p.id = s.plan_id where s.id = ${id} for update of s`,
      );
      if (!row) return;
      const periodStart = new Date(row.current_period_end!);
      const periodEnd = periodBoundary(
        new Date(row.billing_anchor!),
        "months",
        1,
        Number(row.period_index) + 2,
        "Africa/Nairobi",
      );
      const [invoice] = await tx
        .insert(invoices)
        .values({
          customerId: Number(row.customer_id),
          subscriptionId: id,
          kind: "recurring",
          periodStart,
          periodEnd,
          amountCents: Number(row.price_cents),
          dueAt: periodStart,
          issuedAt: clock.now(),
        })
        .onConflictDoNothing()
        .returning();
      if (!invoice) return;
      await tx
        .insert(invoiceLines)
        .values({ invoiceId: invoice.id, description: row.name!, amountCents: invoice.amountCents });
      await postLedgerEntry(tx, money, {
        customerId: invoice.customerId,
        kind: "invoice",
        amountCents: -invoice.amountCents,
        invoiceId: invoice.id,
        memo: `Renewal: ${row.name}`,
        at: clock.now(),
      });
      await settleOpenInvoices(tx, money, clock.now(), oneCustomer(invoice.customerId));
    });
  }
  return due.length;
}

export default async function run(databaseUrl: string) {
  const database = await createBenchDatabase(databaseUrl);
  try {
    const { db } = database;
    await db.execute(sql`insert into plans (code, name, kind, price_cents, period_unit, period_count, rate_limit)
      values ('home-10', 'Home 10 Mbps', 'pppoe', 250000, 'months', 1, '5M/10M')`);
    // Set-based population ends its period within the lead time; the baseline's ends later so
    // that each run has its own subscriptions to invoice.
    await seed(db, 1, SET_BASED, new Date(now.getTime() + 2 * 86_400_000));
    await db.execute(sql`analyze`);
    const clock = new FakeClock(now);
    const ctx = { db, clock, settings: defaultBillingSettings };

    const t0 = performance.now();
    const counts = await issueRecurringInvoices(ctx, systemActor("bench"));
    const seconds = (performance.now() - t0) / 1000;
    if (counts.issued !== SET_BASED)
      throw new Error(`expected ${SET_BASED} invoices, issued ${counts.issued}`);
    console.error(`set-based: ${counts.issued} invoices in ${seconds.toFixed(2)} s`);

    await seed(db, SET_BASED + 1, BASELINE, new Date(now.getTime() + 2 * 86_400_000));
    await db.execute(sql`analyze`);
    // Only the baseline's subscriptions are still without an invoice.
    const t1 = performance.now();
    const looped = await invoiceOneByOne(db, clock);
    const baselineSeconds = (performance.now() - t1) / 1000;
    if (looped !== BASELINE) throw new Error(`baseline expected ${BASELINE}, did ${looped}`);
    console.error(`per-subscription loop: ${looped} invoices in ${baselineSeconds.toFixed(2)} s`);

    const ratio = baselineSeconds / BASELINE / (seconds / SET_BASED);
    return {
      seconds: round(seconds),
      baseline_seconds: round(baselineSeconds),
      ratio: round(ratio, 1),
      subscriptions: SET_BASED,
      baseline_subscriptions: BASELINE,
    };
  } finally {
    await database.close();
  }
}
