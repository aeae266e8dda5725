/**
 * B9: importing an ISP's customers from a spreadsheet: 100,000 CSV rows (customers with plans,
 * phones, expiry dates, router usernames, and opening balances, some in debt) through the import
 * that admins run, in one transaction. The baseline is adding customers one at a time through the
 * sign-up use-case (a transaction each, as a naive script would), on 1,000 rows, reported as a
 * per-row ratio.
 */
import { sql } from "drizzle-orm";
import { defaultBillingSettings, systemActor } from "../src/billing/context.ts";
import { importCustomers } from "../src/billing/import.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { FakeClock } from "../src/clock.ts";
import { queryRows } from "../src/db/client.ts";
import { useSealingKey } from "../src/db/sealed.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";
import { createBenchDatabase, round } from "./support.ts";

const ROWS = 100_000;
const BASELINE = 1_000;
const now = new Date("2026-11-28T09:00:00Z");

function csv(rows: number): string {
  const lines = ["account,name,phone,plan,status,expires,router,username,balance"];
  for (let i = 1; i <= rows; i++) {
    const status = i % 20 === 0 ? "suspended" : "active";
    const day = String(1 + (i % 28)).padStart(2, "0");
    // One in ten owes some money, one in ten has credit.
    const balance = i % 10 === 0 ? "-1500.00" : i % 10 === 1 ? "250.50" : "0";
    lines.push(
      `IMP${i},Subscriber ${i},+2547${String(i).padStart(8, "0")},${i % 2 ? "home-10" : "home-20"},${status},2026-12-${day},kibera,imp${i},${balance}`,
    );
  }
  return `${lines.join("\n")}\n`;
}

export default async function run(databaseUrl: string) {
  useSealingKey(createSecretBox(Buffer.alloc(32, 5)));
  const database = await createBenchDatabase(databaseUrl);
  try {
    const { db } = database;
    await db.execute(sql`insert into plans (code, name, kind, price_cents, period_unit, period_count, rate_limit)
      values ('home-10', 'Home 10', 'pppoe', 250000, 'months', 1, '5M/10M'),
             ('home-20', 'Home 20', 'pppoe', 400000, 'months', 1, '10M/20M')`);
    await db.execute(sql`insert into routers (name, host, username, password_encrypted)
      values ('kibera', '10.0.0.1', 'tandao', 'sealed')`);
    const ctx = { db, clock: new FakeClock(now), settings: defaultBillingSettings };
    const file = csv(ROWS);

    const t0 = performance.now();
    const report = await importCustomers(ctx, systemActor("bench"), file, {
      servedCountries: ["KE"],
      fileName: "bench.csv",
      maxBytes: 64 * 1024 * 1024,
      maxRows: ROWS,
    });
    const seconds = (performance.now() - t0) / 1000;
    const [{ n } = { n: "0" }] = await queryRows<{ n: string }>(
      db,
      sql`select count(*)::text as n from customers where account_number like 'IMP%'`,
    );
    if (Number(n) !== ROWS)
      throw new Error(`imported ${n} of ${ROWS}: ${JSON.stringify(report).slice(0, 500)}`);
    console.error(`imported ${n} rows in ${seconds.toFixed(2)} s`);

    const [plan] = await queryRows<{ id: number }>(db, sql`select id from plans where code = 'home-10'`);
    const t1 = performance.now();
    for (let i = 1; i <= BASELINE; i++)
      await createCustomerWithSubscription(ctx, systemActor("bench"), {
        name: `One by one ${i}`,
        phone: `+2541${String(i).padStart(8, "0")}`,
        planId: plan!.id,
      });
    const baselineSeconds = (performance.now() - t1) / 1000;
    return {
      rows: ROWS,
      seconds: round(seconds),
      baseline_rows: BASELINE,
      baseline_seconds: round(baselineSeconds),
      ratio: round(baselineSeconds / BASELINE / (seconds / ROWS), 1),
    };
  } finally {
    await database.close();
  }
}
