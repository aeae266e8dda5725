import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { suspendOverdue } from "../../src/billing/dunning.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { FakeClock, systemClock } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { reconcileRouter } from "../../src/network/reconcile.ts";
import { admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack, waitFor } from "./support.ts";

const N = 1_000;

let database: Database;
let a: { emulator: RouterOsEmulator; routerId: number };
let b: { emulator: RouterOsEmulator; routerId: number };
let stack: ReturnType<typeof networkStack>;

beforeAll(async () => {
  database = await createTestDatabase();
  a = await emulatedRouter(database.db, "tower-a");
  b = await emulatedRouter(database.db, "tower-b");
  stack = networkStack(database.db, systemClock, {
    worker: { maxAttempts: 1_000, backoffBaseMs: 50, backoffMaxMs: 300, pollMs: 100 },
    connection: {
      connectTimeoutMs: 3_000,
      breaker: { threshold: 1, baseCooldownMs: 100, maxCooldownMs: 400 },
    },
  });
});
afterAll(async () => {
  await stack.close();
  await a.emulator.stop();
  await b.emulator.stop();
  await database.close();
});

async function count(query: ReturnType<typeof sql>): Promise<number> {
  const rows = await queryRows<{ n: number }>(database.db, query);
  return Number(rows[0]?.n ?? 0);
}

describe("a router that is down while 1,000 subscribers are suspended", () => {
  it("gets every change once it is back, none lost, none applied twice, and other routers are served meanwhile", async () => {
    const { ctx } = billingContext(database.db, new FakeClock(new Date()));
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const now = Date.now();
    // 1,000 active subscribers on tower A, each with an invoice five days overdue.
    await database.db.execute(sql`
      with c as (
        insert into customers (account_number, phone, name)
        select 'OUT' || g, '+2547' || lpad(g::text, 8, '0'), 'Subscriber ' || g from generate_series(1, ${N}) g
        returning id
      ), s as (
        insert into subscriptions (customer_id, plan_id, router_id, network_username, network_password, status,
          current_period_start, current_period_end, billing_anchor)
        select id, ${plan.id}, ${a.routerId}, 'out' || id, 'pw' || id, 'active',
          ${new Date(now - 35 * 86_400_000).toISOString()}::timestamptz, ${new Date(now - 5 * 86_400_000).toISOString()}::timestamptz,
          ${new Date(now - 35 * 86_400_000).toISOString()}::timestamptz
        from c returning id, customer_id, current_period_end
      )
      insert into invoices (customer_id, subscription_id, kind, period_start, period_end, amount_cents, due_at, issued_at)
      select customer_id, id, 'recurring', current_period_end, current_period_end + interval '30 days', 100000,
        current_period_end, current_period_end - interval '4 days' from s`);
    const initial = await reconcileRouter(
      { db: database.db, clock: systemClock, pool: stack.pool },
      a.routerId,
    );
    expect(initial.ok).toBe(true);
    expect(a.emulator.items("/ppp/secret").filter((s) => s.disabled === "false")).toHaveLength(N);
    stack.worker.start();
    await a.emulator.stop();
    const { suspended } = await suspendOverdue(ctx, job);
    expect(suspended).toBe(N);
    stack.worker.kick();

    // Meanwhile a new subscriber on tower B signs up and pays: B is served while A is down.
    const started = Date.now();
    const fresh = await createCustomerWithSubscription(ctx, admin, {
      name: "Tower B",
      phone: uniquePhone(),
      planId: plan.id,
      routerId: b.routerId,
    });
    await applyPayment(ctx, admin, {
      customerId: fresh.customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `b-${fresh.customer.id}`,
      amountCents: fresh.invoice.amountCents,
    });
    stack.worker.kick();
    // Served while A is still down (checked below): A's backlog does not hold B up. The bound is loose
    // because the embedded database serialises every query of the test and of the worker.
    await waitFor(
      () => b.emulator.find("/ppp/secret", fresh.subscription.networkUsername)?.disabled === "false",
      15_000,
    );
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(a.emulator.items("/ppp/secret").filter((s) => s.disabled === "true")).toHaveLength(0);
    const waiting = await count(
      sql`select count(*)::int as n from provisioning_outbox where router_id = ${a.routerId} and status = 'pending'`,
    );
    expect(waiting).toBe(N);
    await new Promise((r) => setTimeout(r, 500));
    const setsBefore = a.emulator.count("/ppp/secret/set");
    const addsBefore = a.emulator.count("/ppp/secret/add");
    await a.emulator.start();
    await waitFor(
      async () =>
        (await count(
          sql`select count(*)::int as n from provisioning_outbox where router_id = ${a.routerId} and status = 'pending'`,
        )) === 0,
      30_000,
    );
    expect(a.emulator.items("/ppp/secret").filter((s) => s.disabled === "true")).toHaveLength(N);
    expect(a.emulator.count("/ppp/secret/set") - setsBefore).toBe(N);
    expect(a.emulator.count("/ppp/secret/add") - addsBefore).toBe(0);
    expect(
      await count(
        sql`select count(*)::int as n from provisioning_outbox where status in ('dead', 'pending')`,
      ),
    ).toBe(0);
  }, 60_000);
});
