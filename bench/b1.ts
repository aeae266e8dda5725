/**
 * B1: issue invoices for 100,000 subscriptions (`--subscriptions N` for more) with the set-based
 * invoice run, at every size from 10,000 up by tens, each in a fresh database, to show that the
 * cost per subscription stays flat. Two comparisons in the same run:
 * - the floor: the same rows (invoices, lines, ledger entries) for as many other subscriptions,
 *   written by one plain `insert … select` with nothing else (no locks, no idempotency, no
 *   settlement), into the same tables; `floor_ratio` = the run's time / the floor's;
 * - the baseline: a per-subscription loop (one transaction and a handful of statements per
 *   subscription, the way a naive billing script does it) on 10,000; `ratio` compares rates.
 */
import { parseArgs } from "node:util";
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

const DEFAULT_SUBSCRIPTIONS = 100_000;
const BASELINE = 10_000;
const now = new Date("2026-11-28T09:00:00Z");

/** `count` customers, each with one active monthly subscription whose period ends at `periodEnd`. */
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

/**
 * The floor: the rows the run writes for these subscriptions (an invoice, its line, the ledger
 * charge), in one plain statement: the least any invoice run could do.
 */
async function writeFloorRows(db: Db, firstSubscriptionId: number, clock: FakeClock): Promise<number> {
  const at = sql`${clock.now().toISOString()}::timestamptz`;
  const rows = await queryRows<{ n: number }>(
    db,
    sql`
    with issued as (
      insert into invoices (customer_id, subscription_id, kind, period_start, period_end, amount_cents, due_at, issued_at)
      select s.customer_id, s.id, 'recurring', s.current_period_end, s.current_period_end + interval '1 month',
        p.price_cents, s.current_period_end, ${at}
      from subscriptions s join plans p on p.id = s.plan_id
      where s.id >= ${firstSubscriptionId}::int
      returning id, customer_id, amount_cents
    ),
    lines as (
      insert into invoice_lines (invoice_id, description, amount_cents)
      select id, 'Home 10 Mbps', amount_cents from issued
    ),
    charged as (
      insert into ledger_entries (customer_id, kind, amount_cents, invoice_id, memo, created_at)
      select customer_id, 'invoice', -amount_cents, id, 'Renewal: Home 10 Mbps', ${at} from issued
    )
    select count(*)::int as n from issued`,
  );
  return Number(rows[0]?.n ?? 0);
}

interface SizeFigures {
  subscriptions: number;
  seconds: number;
  floorSeconds: number;
  baselineSeconds?: number;
}

/** One size in a fresh database: the run, then the floor on as many more subscriptions. */
async function measureSize(databaseUrl: string, size: number, withBaseline: boolean): Promise<SizeFigures> {
  const database = await createBenchDatabase(databaseUrl);
  try {
    const { db } = database;
    await db.execute(sql`insert into plans (code, name, kind, price_cents, period_unit, period_count, rate_limit)
      values ('home-10', 'Home 10 Mbps', 'pppoe', 250000, 'months', 1, '5M/10M')`);
    const periodEnd = new Date(now.getTime() + 2 * 86_400_000);
    await seed(db, 1, size, periodEnd);
    await db.execute(sql`analyze`);
    const clock = new FakeClock(now);
    const ctx = { db, clock, settings: defaultBillingSettings };

    const t0 = performance.now();
    const counts = await issueRecurringInvoices(ctx, systemActor("bench"));
    const seconds = (performance.now() - t0) / 1000;
    if (counts.issued !== size) throw new Error(`expected ${size} invoices, issued ${counts.issued}`);
    console.error(`${size}: set-based run ${seconds.toFixed(2)} s`);

    // The floor's subscriptions are new (their ids follow), so it writes as many rows again.
    const [next] = await queryRows<{ id: number }>(
      db,
      sql`select coalesce(max(id), 0) + 1 as id from subscriptions`,
    );
    await seed(db, size + 1, size, periodEnd);
    await db.execute(sql`analyze`);
    const t1 = performance.now();
    const floorRows = await writeFloorRows(db, Number(next!.id), clock);
    const floorSeconds = (performance.now() - t1) / 1000;
    if (floorRows !== size) throw new Error(`floor expected ${size}, wrote ${floorRows}`);
    console.error(
      `${size}: floor ${floorSeconds.toFixed(2)} s, ratio ${(seconds / floorSeconds).toFixed(2)}`,
    );

    if (!withBaseline) return { subscriptions: size, seconds, floorSeconds };
    // Only the baseline's subscriptions are still without an invoice.
    await seed(db, 2 * size + 1, BASELINE, periodEnd);
    await db.execute(sql`analyze`);
    const t2 = performance.now();
    const looped = await invoiceOneByOne(db, clock);
    const baselineSeconds = (performance.now() - t2) / 1000;
    if (looped !== BASELINE) throw new Error(`baseline expected ${BASELINE}, did ${looped}`);
    console.error(`per-subscription loop: ${looped} invoices in ${baselineSeconds.toFixed(2)} s`);
    return { subscriptions: size, seconds, floorSeconds, baselineSeconds };
  } finally {
    await database.close();
  }
}

export default async function run(databaseUrl: string, args: string[]) {
  const { values } = parseArgs({ args, options: { subscriptions: { type: "string" } } });
  const largest = Number(values.subscriptions ?? DEFAULT_SUBSCRIPTIONS);
  if (!Number.isInteger(largest) || largest < 10_000)
    throw new Error("--subscriptions takes a whole number of at least 10000");
  const sizes: number[] = [];
  for (let size = 10_000; size < largest; size *= 10) sizes.push(size);
  sizes.push(largest);

  const measured: SizeFigures[] = [];
  for (const size of sizes) measured.push(await measureSize(databaseUrl, size, size === largest));
  const top = measured.at(-1)!;
  const perSubscriptionUs = Object.fromEntries(
    measured.map((m) => [m.subscriptions, round((m.seconds / m.subscriptions) * 1e6, 1)]),
  );
  const costs = Object.values(perSubscriptionUs);
  return {
    subscriptions: top.subscriptions,
    seconds: round(top.seconds),
    floor_seconds: round(top.floorSeconds),
    floor_ratio: round(top.seconds / top.floorSeconds),
    floor_ratios: Object.fromEntries(
      measured.map((m) => [m.subscriptions, round(m.seconds / m.floorSeconds)]),
    ),
    per_subscription_us: perSubscriptionUs,
    // The largest cost per subscription over the smallest, across the sizes: 1 is perfectly flat.
    flatness: round(Math.max(...costs) / Math.min(...costs)),
    baseline_seconds: round(top.baselineSeconds!),
    baseline_subscriptions: BASELINE,
    ratio: round(top.baselineSeconds! / BASELINE / (top.seconds / top.subscriptions), 1),
  };
}
