import { randomBytes } from "node:crypto";
import { defaultBillingSettings } from "../src/billing/context.ts";
import { applyPayment } from "../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { systemClock } from "../src/clock.ts";
import { plans } from "../src/db/schema/index.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";
import { RouterOsEmulator } from "../src/network/emulator/server.ts";
import { RouterPool } from "../src/network/pool.ts";
import { addRouter } from "../src/network/routers.ts";
import { ProvisioningWorker } from "../src/network/worker.ts";
import { createBenchDatabase, percentile, round } from "./support.ts";

const PAYMENTS = 200;

/**
 * B5: from `applyPayment` (the core use-case, as the M-Pesa callback calls it) to the subscriber's
 * PPPoE secret enabled on the emulated router, one payment after another, with the worker running.
 */
export default async function run(databaseUrl: string) {
  const database = await createBenchDatabase(databaseUrl);
  const box = createSecretBox(randomBytes(32));
  const emulator = await new RouterOsEmulator({ username: "bench", password: "bench" }).start();
  const pool = new RouterPool({ db: database.db, box, clock: systemClock });
  const worker = new ProvisioningWorker({ db: database.db, clock: systemClock, pool });
  try {
    const db = database.db;
    const ctx = { db, clock: systemClock, settings: defaultBillingSettings };
    const actor = { kind: "webhook" as const, id: "mpesa" };
    const [plan] = await db
      .insert(plans)
      .values({
        code: "home5",
        name: "Home 5",
        kind: "pppoe",
        priceCents: 150_000,
        periodUnit: "months",
        rateLimit: "3M/5M",
      })
      .returning();
    const { id: routerId } = await addRouter(db, box, {
      name: "bench",
      host: "127.0.0.1",
      port: emulator.port,
      username: "bench",
      password: "bench",
    });
    const pending = [];
    for (let i = 0; i < PAYMENTS; i++) {
      pending.push(
        await createCustomerWithSubscription(ctx, actor, {
          name: `Subscriber ${i}`,
          phone: `+2547${String(10_000_000 + i).slice(-8)}`,
          planId: plan!.id,
          routerId,
        }),
      );
    }
    await worker.drain();
    worker.start();
    const latencies: number[] = [];
    for (const [i, { customer, subscription, invoice }] of pending.entries()) {
      const started = performance.now();
      await applyPayment(ctx, actor, {
        customerId: customer.id,
        method: "mpesa_stk",
        provider: "mpesa",
        providerRef: `B5${String(i).padStart(8, "0")}`,
        amountCents: invoice.amountCents,
      });
      worker.kick();
      while (emulator.find("/ppp/secret", subscription.networkUsername)?.disabled !== "false") {
        if (performance.now() - started > 30_000) throw new Error(`payment ${i} not provisioned in 30 s`);
        await new Promise((r) => setImmediate(r));
      }
      latencies.push(performance.now() - started);
    }
    latencies.sort((a, b) => a - b);
    return {
      p50_ms: round(percentile(latencies, 50), 1),
      p99_ms: round(percentile(latencies, 99), 1),
      max_ms: round(latencies.at(-1) ?? 0, 1),
      payments: PAYMENTS,
    };
  } finally {
    await worker.stop();
    await pool.close();
    await emulator.stop();
    await database.close();
  }
}
