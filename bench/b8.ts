/**
 * B8: the admin chat's heavy answers on an ISP of some size. `/stats` (businessStats) and `/report`
 * (twelve months of figures, then the chart and the CSV) on 100,000 subscriptions and 1,000,000
 * payments on the PostgreSQL server, and `/vouchers` of 500 codes (the batch, then the PDF).
 * Each figure is the median of five runs after one warm-up. The baseline is the naive figure an
 * admin script would compute: every customer's balance summed from the whole ledger (the "who owes"
 * part of /stats without its open-invoice shortcut), reported as a ratio.
 */
import { eq, sql } from "drizzle-orm";
import { revenueReport } from "../src/admin/report.ts";
import { voucherCards, voucherSheetPdf } from "../src/admin/voucher-sheet.ts";
import { defaultBillingSettings, systemActor } from "../src/billing/context.ts";
import { businessStats, monthlyRevenue } from "../src/billing/stats.ts";
import { createVoucherBatch } from "../src/billing/vouchers.ts";
import { FakeClock } from "../src/clock.ts";
import { queryRows } from "../src/db/client.ts";
import { plans } from "../src/db/schema/index.ts";
import { createBenchDatabase, round } from "./support.ts";

const SUBSCRIPTIONS = 100_000;
const PAYMENTS = 1_000_000;
const now = new Date("2026-11-28T09:00:00Z");
const DAY_MS = 86_400_000;

async function median(times: number, work: () => Promise<unknown>): Promise<number> {
  await work();
  const took: number[] = [];
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    await work();
    took.push(performance.now() - t0);
  }
  took.sort((a, b) => a - b);
  return took[Math.floor(took.length / 2)]!;
}

export default async function run(databaseUrl: string) {
  const database = await createBenchDatabase(databaseUrl);
  try {
    const { db } = database;
    const at = (ms: number) => sql`${new Date(now.getTime() + ms).toISOString()}::timestamptz`;
    const seeding = performance.now();
    await db.execute(sql`insert into plans (code, name, kind, price_cents, period_unit, period_count, rate_limit)
      values ('home-5', 'Home 5', 'pppoe', 150000, 'months', 1, '2M/5M'),
             ('home-10', 'Home 10', 'pppoe', 250000, 'months', 1, '5M/10M'),
             ('home-20', 'Home 20', 'pppoe', 400000, 'months', 1, '10M/20M'),
             ('day', 'Day pass', 'hotspot', 5000, 'days', 1, '2M/4M')`);
    await db.execute(sql`
      insert into customers (account_number, phone, name)
      select 'B' || g, '+2547' || lpad(g::text, 8, '0'), 'Subscriber ' || g
      from generate_series(1, ${SUBSCRIPTIONS}::int) g`);
    // 85 % active, 7 % suspended, 3 % pending, 5 % cancelled over the year; created over two years;
    // periods ending over the next month.
    await db.execute(sql`
      insert into subscriptions (customer_id, plan_id, network_username, network_password, status,
        current_period_start, current_period_end, billing_anchor, period_index, created_at, cancelled_at)
      select c.id, (select id from plans where code = (array['home-5','home-10','home-20'])[1 + c.id % 3]),
        lower(c.account_number), 'pw',
        case when c.id % 100 < 85 then 'active' when c.id % 100 < 92 then 'suspended'
             when c.id % 100 < 95 then 'pending' else 'cancelled' end,
        ${at(-30 * DAY_MS)} + (c.id % 30) * interval '1 day', ${at(0)} + (c.id % 30) * interval '1 day',
        ${at(-30 * DAY_MS)}, 0,
        ${at(-730 * DAY_MS)} + (c.id % 730) * interval '1 day',
        case when c.id % 100 >= 95 then ${at(-365 * DAY_MS)} + (c.id % 365) * interval '1 day' end
      from customers c`);
    // A year of payments, each with its ledger credit.
    await db.execute(sql`
      insert into payments (customer_id, method, provider, provider_ref, amount_cents, phone, status, received_at)
      select 1 + (g::bigint * 7919) % ${SUBSCRIPTIONS}::int, 'mpesa_c2b', 'mpesa', 'B8' || g, 100000 + (g % 5) * 50000,
        '+2547' || lpad((1 + (g::bigint * 7919) % ${SUBSCRIPTIONS}::int)::text, 8, '0'), 'applied',
        ${at(-365 * DAY_MS)} + (g % 525600) * interval '1 minute'
      from generate_series(1, ${PAYMENTS}::int) g`);
    await db.execute(sql`
      insert into ledger_entries (customer_id, kind, amount_cents, payment_id, memo, created_at)
      select customer_id, 'payment', amount_cents, id, 'payment', received_at from payments`);
    // Twelve monthly charges per customer; the last one is open for one customer in ten.
    await db.execute(sql`
      insert into ledger_entries (customer_id, kind, amount_cents, memo, created_at)
      select c.id, 'invoice', -250000, 'month ' || m, ${at(-365 * DAY_MS)} + m * interval '30 days'
      from customers c, generate_series(0, 11) m`);
    await db.execute(sql`
      insert into invoices (customer_id, subscription_id, kind, status, amount_cents, period_start, period_end, due_at, issued_at)
      select s.customer_id, s.id, 'recurring', case when s.customer_id % 10 = 0 then 'open' else 'paid' end, 250000,
        s.current_period_start, s.current_period_end, s.current_period_start, s.current_period_start
      from subscriptions s`);
    await db.execute(sql`analyze`);
    const seededSeconds = (performance.now() - seeding) / 1000;
    console.error(`seeded in ${seededSeconds.toFixed(1)} s`);

    const clock = new FakeClock(now);
    const ctx = { db, clock, settings: defaultBillingSettings };
    const timezone = "Africa/Nairobi";

    let stats: Awaited<ReturnType<typeof businessStats>> | undefined;
    const statsMs = await median(5, async () => {
      stats = await businessStats(db, clock, { timezone });
    });
    console.error(`stats: ${JSON.stringify(stats)}`);

    let pngBytes = 0;
    const reportMs = await median(5, async () => {
      const rows = await monthlyRevenue(db, { months: 12, timezone, now });
      const report = await revenueReport(rows, { isp: "Bench Net" });
      pngBytes = report.png.length;
    });

    await db.execute(sql`insert into plans (code, name, kind, price_cents, period_unit, period_count, rate_limit,
      time_limit_seconds) values ('hour', '1 Hour', 'hotspot', 2000, 'hours', 1, '2M/4M', 3600)`);
    const [hour] = await db.select().from(plans).where(eq(plans.code, "hour"));
    let pdfBytes = 0;
    const vouchersMs = await median(5, async () => {
      const { codes } = await createVoucherBatch(ctx, systemActor("bench"), {
        planId: hour!.id,
        quantity: 500,
      });
      const pdf = await voucherSheetPdf({
        isp: "Bench Net",
        wifiName: "BenchNet",
        vouchers: voucherCards(hour!, codes),
      });
      pdfBytes = pdf.length;
    });

    // Baseline: every customer's balance from the whole ledger.
    const baselineMs = await median(3, () =>
      queryRows(
        db,
        sql`select count(*) as customers, -sum(balance) as total from
            (select sum(amount_cents) as balance from ledger_entries group by customer_id
             having sum(amount_cents) < 0) owed`,
      ),
    );

    return {
      stats_ms: round(statsMs, 1),
      report_ms: round(reportMs, 1),
      vouchers_500_ms: round(vouchersMs, 1),
      owing_full_scan_ms: round(baselineMs, 1),
      ratio: round(baselineMs / statsMs, 1),
      png_bytes: pngBytes,
      pdf_bytes: pdfBytes,
      subscriptions: SUBSCRIPTIONS,
      payments: PAYMENTS,
    };
  } finally {
    await database.close();
  }
}
