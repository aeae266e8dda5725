import { type SQL, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { suspendOverdue } from "../../src/billing/dunning.ts";
import { FakeClock, systemClock } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { reconcileRouter } from "../../src/network/reconcile.ts";
import { billingContext, createPlan, job } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack, waitFor } from "./support.ts";

/**
 * Changes for a router that cannot be reached wait at the longest back-off (five minutes here, as
 * in production). When the router answers again they must not wait that out.
 */

const N = 300;
/** Production's longest back-off: what the queued rows wait at while their router is down. */
const BACKOFF_MAX_MS = 300_000;
/** What the issue asks: everything delivered within this long of the router's return. */
const BACK_WITHIN_MS = 30_000;
/** A short probe interval keeps the test fast; production's default is 15 s (ROUTER_PROBE_SECONDS). */
const PROBE_MS = 200;

let database: Database;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

async function count(query: SQL): Promise<number> {
  const rows = await queryRows<{ n: number }>(database.db, query);
  return Number(rows[0]?.n ?? 0);
}

/** `n` active subscribers on the router, each with an invoice five days overdue, their secrets on it. */
async function overdueSubscribers(routerId: number, prefix: string, n: number) {
  const plan = await createPlan(database.db, { priceCents: 100_000 });
  const now = Date.now();
  const iso = (ms: number) => new Date(ms).toISOString();
  await database.db.execute(sql`
    with c as (
      insert into customers (account_number, phone, name)
      select ${prefix} || g, '+2547' || lpad((${Math.floor(Math.random() * 9_000)} * 1000 + g)::text, 8, '0'),
        'Subscriber ' || g from generate_series(1, ${n}) g
      returning id
    ), s as (
      insert into subscriptions (customer_id, plan_id, router_id, network_username, network_password, status,
        current_period_start, current_period_end, billing_anchor)
      select id, ${plan.id}, ${routerId}, ${prefix} || id, 'pw' || id, 'active',
        ${iso(now - 35 * 86_400_000)}::timestamptz, ${iso(now - 5 * 86_400_000)}::timestamptz,
        ${iso(now - 35 * 86_400_000)}::timestamptz
      from c returning id, customer_id, current_period_end
    )
    insert into invoices (customer_id, subscription_id, kind, period_start, period_end, amount_cents, due_at, issued_at)
    select customer_id, id, 'recurring', current_period_end, current_period_end + interval '30 days', 100000,
      current_period_end, current_period_end - interval '4 days' from s`);
}

/**
 * The subscribers' secrets put on the router through a pool of its own, closed after. The worker's
 * pool then first meets the router when it tries the queued rows: had it held a connection when the
 * router went down, its prober could open the router's circuit before the rows were tried, and they
 * would wait untried instead of at the longest back-off, the case these tests are about.
 */
async function putOnRouter(routerId: number) {
  const setup = networkStack(database.db, systemClock);
  try {
    return await reconcileRouter({ db: database.db, clock: systemClock, pool: setup.pool }, routerId);
  } finally {
    await setup.close();
  }
}

const pendingFor = (routerId: number) =>
  count(
    sql`select count(*)::int as n from provisioning_outbox where router_id = ${routerId} and status = 'pending'`,
  );

/** Every queued row tried, failed on the unreachable router, and parked at the longest back-off. */
const backedOff = (routerId: number) =>
  count(sql`select count(*)::int as n from provisioning_outbox
            where router_id = ${routerId} and status = 'pending' and last_error is not null
              and next_attempt_at > now() + interval '4 minutes'`);

const disabledSecrets = (emulator: RouterOsEmulator, prefix: string) =>
  emulator.items("/ppp/secret").filter((s) => s.name?.startsWith(prefix) && s.disabled === "true").length;

describe("a router that comes back after an outage", () => {
  it(`gets the ${N} changes queued meanwhile within 30 s of its return, not at the end of their 5-minute back-off`, async () => {
    const tower = await emulatedRouter(database.db);
    const stack = networkStack(database.db, systemClock, {
      worker: { backoffMaxMs: BACKOFF_MAX_MS, pollMs: 100, probeMs: PROBE_MS, maxAttempts: 8 },
      connection: { connectTimeoutMs: 1_000 },
    });
    try {
      await overdueSubscribers(tower.routerId, "back", N);
      expect((await putOnRouter(tower.routerId)).ok).toBe(true);

      await tower.emulator.stop();
      const { ctx } = billingContext(database.db, new FakeClock(new Date()));
      expect((await suspendOverdue(ctx, job)).suspended).toBe(N);
      // Started once every row is queued: its first claim takes them all (one batch).
      stack.worker.start();
      // The worker tries them, finds the router unreachable and parks them at the longest back-off.
      await waitFor(async () => (await backedOff(tower.routerId)) === N, 20_000);
      expect(disabledSecrets(tower.emulator, "back")).toBe(0);

      await tower.emulator.start();
      const back = Date.now();
      await waitFor(async () => (await pendingFor(tower.routerId)) === 0, BACK_WITHIN_MS);
      expect(Date.now() - back).toBeLessThan(BACK_WITHIN_MS);
      expect(disabledSecrets(tower.emulator, "back")).toBe(N);
      expect(
        await count(sql`select count(*)::int as n from provisioning_outbox
                        where router_id = ${tower.routerId} and status = 'dead'`),
      ).toBe(0);
    } finally {
      await stack.close();
      await tower.emulator.stop();
    }
  }, 90_000);

  it("is noticed by an instance started after the outage began, from what the first one recorded", async () => {
    const n = 20;
    const tower = await emulatedRouter(database.db);
    const options = {
      worker: { backoffMaxMs: BACKOFF_MAX_MS, pollMs: 100, probeMs: PROBE_MS },
      connection: { connectTimeoutMs: 1_000 },
    };
    const first = networkStack(database.db, systemClock, options);
    const second = networkStack(database.db, systemClock, options);
    try {
      await overdueSubscribers(tower.routerId, "rest", n);
      expect((await putOnRouter(tower.routerId)).ok).toBe(true);
      await tower.emulator.stop();
      const { ctx } = billingContext(database.db, new FakeClock(new Date()));
      expect((await suspendOverdue(ctx, job)).suspended).toBe(n);
      first.worker.start();
      await waitFor(async () => (await backedOff(tower.routerId)) === n, 20_000);
      // The first instance stops (a deploy); the next one has never talked to this router.
      await first.close();

      await tower.emulator.start();
      const back = Date.now();
      second.worker.start();
      await waitFor(async () => (await pendingFor(tower.routerId)) === 0, BACK_WITHIN_MS);
      expect(Date.now() - back).toBeLessThan(BACK_WITHIN_MS);
      expect(disabledSecrets(tower.emulator, "rest")).toBe(n);
    } finally {
      await first.close();
      await second.close();
      await tower.emulator.stop();
    }
  }, 90_000);

  it("a change that failed on a connection dropped once is sent when the next one is made, not 5 minutes on", async () => {
    const tower = await emulatedRouter(database.db);
    // Production's probe interval: the prober only asks routers still disconnected anyway.
    const stack = networkStack(database.db, systemClock, {
      worker: { backoffMaxMs: BACKOFF_MAX_MS, pollMs: 100, probeMs: 15_000 },
    });
    try {
      await overdueSubscribers(tower.routerId, "blip", 2);
      expect((await putOnRouter(tower.routerId)).ok).toBe(true);
      const [first, second] = tower.emulator.items("/ppp/secret").filter((s) => s.name?.startsWith("blip"));
      stack.worker.start();
      // The connection drops once, on the first command of the first suspension.
      let dropped = false;
      tower.emulator.faults.dropWhen = (command) => {
        if (dropped || command.command !== "/ppp/secret/print") return false;
        dropped = true;
        return true;
      };
      const { ctx } = billingContext(database.db, new FakeClock(new Date()));
      await database.db.execute(
        sql`update invoices set due_at = now() + interval '1 day'
            where subscription_id in (select id from subscriptions where network_username = ${second!.name!})`,
      );
      expect((await suspendOverdue(ctx, job)).suspended).toBe(1);
      stack.worker.kick();
      await waitFor(async () => (await backedOff(tower.routerId)) === 1);
      tower.emulator.faults.dropWhen = null;
      expect(tower.emulator.find("/ppp/secret", first!.name!)?.disabled).toBe("false");

      // The router answers all along: the next change goes out over a new connection, and the one
      // parked by the drop goes with it.
      await database.db.execute(
        sql`update invoices set due_at = now() - interval '5 days'
            where subscription_id in (select id from subscriptions where network_username = ${second!.name!})`,
      );
      expect((await suspendOverdue(ctx, job)).suspended).toBe(1);
      stack.worker.kick();
      await waitFor(async () => (await pendingFor(tower.routerId)) === 0);
      expect(disabledSecrets(tower.emulator, "blip")).toBe(2);
    } finally {
      await stack.close();
      await tower.emulator.stop();
    }
  }, 60_000);
});
