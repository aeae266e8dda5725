import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { defaultBillingSettings } from "../src/billing/context.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { systemClock } from "../src/clock.ts";
import { type Database, type Db, openDatabase } from "../src/db/client.ts";
import { plans } from "../src/db/schema/index.ts";
import { useSealingKey } from "../src/db/sealed.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";

/** A fresh, migrated database on the benchmark server, dropped by `close()`. */
// PPPoE passwords are sealed at rest with a key, as the app does with SECRET_KEY.
useSealingKey(createSecretBox(randomBytes(32)));

export async function createBenchDatabase(serverUrl: string, maxConnections = 10): Promise<Database> {
  const name = `tandao_bench_${randomBytes(4).toString("hex")}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const database = await openDatabase({ databaseUrl: url.toString(), dataDir: "", maxConnections });
  await database.migrate();
  const close = database.close;
  return {
    ...database,
    close: async () => {
      await close();
      const dropper = postgres(serverUrl, { max: 1, onnotice: () => {} });
      await dropper.unsafe(`drop database if exists "${name}" with (force)`);
      await dropper.end();
    },
  };
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function percentile(sortedMs: number[], p: number): number {
  if (sortedMs.length === 0) return 0;
  const index = Math.min(sortedMs.length - 1, Math.ceil((p / 100) * sortedMs.length) - 1);
  return sortedMs[Math.max(0, index)]!;
}

/**
 * What the menu benchmarks (B3, B7) walk through: four PPPoE plans, six hotspot packages, and
 * `customers` subscribers (`+2547100000nn`…), each on one of the PPPoE plans in turn. Returns the
 * customers' ids, in order.
 */
export async function seedMenuCustomers(db: Db, customers: number): Promise<number[]> {
  const ctx = { db, clock: systemClock, settings: defaultBillingSettings };
  const admin = { kind: "admin" as const, id: "bench" };
  const inserted = await db
    .insert(plans)
    .values([
      ...["Home 5", "Home 10", "Home 20", "Home 50"].map((name, i) => ({
        code: `home-${i}`,
        name,
        kind: "pppoe" as const,
        priceCents: (1_500 + i * 1_000) * 100,
        periodUnit: "months" as const,
        rateLimit: "5M/10M",
      })),
      ...["1 Hour", "3 Hours", "1 Day", "3 Days", "1 Week", "1 Month"].map((name, i) => ({
        code: `hot-${i}`,
        name,
        kind: "hotspot" as const,
        priceCents: (10 + i * 40) * 100,
        periodUnit: "hours" as const,
        periodCount: [1, 3, 24, 72, 168, 720][i]!,
        rateLimit: "2M/4M",
      })),
    ])
    .returning();
  const ids: number[] = [];
  for (let i = 0; i < customers; i++) {
    const created = await createCustomerWithSubscription(ctx, admin, {
      name: `Subscriber ${i}`,
      phone: `+2547${String(10_000_000 + i).padStart(8, "0")}`,
      planId: inserted[i % 4]!.id,
    });
    ids.push(created.customer.id);
  }
  return ids;
}
