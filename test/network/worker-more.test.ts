import net from "node:net";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyPayment } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { expireVouchers, sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { DAY, FakeClock, systemClock } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import { createLogger } from "../../src/logger.ts";
import { RouterConnection, RouterUnavailableError } from "../../src/network/connection.ts";
import { listActiveSessions } from "../../src/network/driver.ts";
import { startNetwork } from "../../src/network/index.ts";
import { reconcileRouter } from "../../src/network/reconcile.ts";
import { admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres } from "../support/db.ts";
import { box, emulatedRouter, networkStack, waitFor } from "./support.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase({ maxConnections: 20 });
});
afterAll(async () => {
  await database.close();
});

/** A hotspot package of a day at a speed of its own (its profile is the router's to hold). */
const dayPass = () =>
  createPlan(database.db, {
    priceCents: 2_000,
    kind: "hotspot",
    periodUnit: "hours",
    periodCount: 24,
    rateLimit: "512k/1M",
  });

describe("vouchers on every router", () => {
  it("a voucher sold for no particular router goes to all of them and is removed from all when it expires", async () => {
    const one = await emulatedRouter(database.db);
    const two = await emulatedRouter(database.db);
    const clock = new FakeClock(new Date());
    const stack = networkStack(database.db, clock);
    try {
      const { ctx } = billingContext(database.db, clock);
      const plan = await dayPass();
      const sold = await database.db.transaction((tx) =>
        sellVoucherInTx(tx, ctx, admin, { planId: plan.id, phone: uniquePhone(), language: "en" }),
      );
      await stack.worker.drain();
      for (const r of [one, two]) {
        expect(r.emulator.find("/ip/hotspot/user", sold.code)).toMatchObject({
          "limit-uptime": "1d",
          "limit-bytes-total": "0",
        });
      }
      one.emulator.connectHotspot(sold.code);
      const api = await stack.pool.get(one.routerId);
      expect((await listActiveSessions(api)).hotspot.map((s) => s.user)).toEqual([sold.code]);

      clock.advance(2 * DAY);
      expect((await expireVouchers(ctx, job)).removedFromRouters).toBeGreaterThanOrEqual(1);
      await stack.worker.drain();
      for (const r of [one, two]) expect(r.emulator.find("/ip/hotspot/user", sold.code)).toBeUndefined();
      expect((await listActiveSessions(api)).hotspot).toEqual([]);
    } finally {
      await stack.close();
      await one.emulator.stop();
      await two.emulator.stop();
    }
  });
});

describe("a delivery's profile check", () => {
  it("is remembered for a minute of the worker's clock, then made again", async () => {
    const router = await emulatedRouter(database.db);
    const clock = new FakeClock(new Date("2026-05-01T08:00:00Z"));
    const stack = networkStack(database.db, clock);
    try {
      const { ctx } = billingContext(database.db, clock);
      const plan = await dayPass();
      const sell = async () => {
        await database.db.transaction((tx) =>
          sellVoucherInTx(tx, ctx, admin, {
            planId: plan.id,
            phone: uniquePhone(),
            language: "en",
            // For this router only: the other tests' routers are stopped by now.
            routerId: router.routerId,
          }),
        );
        await stack.worker.drain();
      };
      const checks = () => router.emulator.count("/ip/hotspot/user/profile/print");
      await sell();
      expect(checks()).toBe(1);
      clock.advance(59_000);
      await sell();
      expect(checks()).toBe(1);
      clock.advance(2_000);
      await sell();
      expect(checks()).toBe(2);
    } finally {
      await stack.close();
      await router.emulator.stop();
    }
  });
});

describe("API-SSL", () => {
  it("the driver passes the port and TLS through: the router's port receives a TLS handshake, not a login", async () => {
    const first = new Promise<Buffer>((resolve) => {
      const server = net.createServer((socket) => {
        socket.once("data", (chunk) => {
          resolve(chunk);
          socket.destroy();
          server.close();
        });
      });
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as net.AddressInfo).port;
        const connection = new RouterConnection(
          { host: "127.0.0.1", port, tls: true, username: "admin", password: "x" },
          { connectTimeoutMs: 2_000 },
        );
        connection
          .run("/system/identity/print")
          .then(() => expect.unreachable("the fake server never answers"))
          .catch((error) => expect(error).toBeInstanceOf(RouterUnavailableError))
          .finally(() => connection.close());
      });
    });
    const hello = await first;
    expect(hello[0]).toBe(0x16); // TLS record: handshake
    expect(hello[1]).toBe(0x03);
  });
});

describe("startNetwork", () => {
  it("runs the worker on its own (poll and kick), reports routers, reconciles on demand, and stops cleanly", async () => {
    const tower = await emulatedRouter(database.db);
    const network = startNetwork({
      db: database.db,
      clock: systemClock,
      logger: createLogger("silent"),
      box,
      config: {
        ADMIN_PHONE: "+254700000001",
        RECONCILE_CRON: "0 0 1 1 *",
        PROVISIONING_MAX_ATTEMPTS: 3,
        ROUTER_COMMAND_TIMEOUT_MS: 2_000,
        ROUTER_PROBE_SECONDS: 15,
        SCHEDULER: true,
      },
      worker: { pollMs: 100 },
    });
    try {
      const { ctx } = billingContext(database.db, new FakeClock(new Date()));
      const plan = await createPlan(database.db, { priceCents: 100_000 });
      const created = await createCustomerWithSubscription(ctx, admin, {
        name: "Started Network",
        phone: uniquePhone(),
        planId: plan.id,
        routerId: tower.routerId,
      });
      await applyPayment(ctx, admin, {
        customerId: created.customer.id,
        method: "mpesa_stk",
        provider: "mpesa",
        providerRef: `SN${created.customer.id}`,
        amountCents: created.invoice.amountCents,
      });
      network.kick();
      await waitFor(
        () => tower.emulator.find("/ppp/secret", created.subscription.networkUsername)?.disabled === "false",
        5_000,
      );
      // The row is marked done just after the router confirmed the change.
      await waitFor(
        async () => (await network.listRouters()).find((r) => r.id === tower.routerId)?.queueDepth === 0,
        5_000,
      );
      const test = await network.testRouter(tower.routerId);
      expect(test.ok).toBe(true);
      // Profiles of the other active plans are still missing on this router: the repair adds them.
      const repaired = await network.reconcile();
      expect(repaired.reports.find((r) => r.routerId === tower.routerId)?.ok).toBe(true);
      const dry = await network.reconcileRouter(tower.routerId, { dryRun: true });
      expect(dry).toMatchObject({ ok: true, drift: [] });
    } finally {
      await network.stop();
      await tower.emulator.stop();
    }
  });
});

describe.runIf(onRealPostgres())("two workers on the same queue (real PostgreSQL)", () => {
  it("deliver each target once: no change is applied twice when they race", async () => {
    const tower = await emulatedRouter(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const n = 100;
    const now = new Date();
    const later = new Date(now.getTime() + 30 * DAY);
    await database.db.execute(sql`
      with c as (
        insert into customers (account_number, phone, name)
        select 'RACE' || g, '+2548' || lpad(g::text, 8, '0'), 'Race ' || g from generate_series(1, ${n}) g
        returning id
      )
      insert into subscriptions (customer_id, plan_id, router_id, network_username, network_password, status,
        current_period_start, current_period_end, billing_anchor)
      select id, ${plan.id}, ${tower.routerId}, 'race' || id, 'pw' || id, 'active',
        ${now.toISOString()}::timestamptz, ${later.toISOString()}::timestamptz, ${now.toISOString()}::timestamptz
      from c`);
    const first = networkStack(database.db, systemClock, {
      worker: { batchSize: 2, perRouterConcurrency: 4 },
    });
    const second = networkStack(database.db, systemClock, {
      worker: { batchSize: 3, perRouterConcurrency: 4 },
    });
    try {
      expect(
        (await reconcileRouter({ db: database.db, clock: systemClock, pool: first.pool }, tower.routerId)).ok,
      ).toBe(true);
      // Each subscriber is suspended, restored and suspended again: three rows, one final state.
      await database.db.execute(
        sql`update subscriptions set status = 'suspended' where router_id = ${tower.routerId}`,
      );
      await database.db.execute(sql`
        insert into provisioning_outbox (router_id, subscription_id, action, next_attempt_at, created_at)
        select s.router_id, s.id, a.action, now(), now()
        from subscriptions s cross join (values (1, 'suspend'), (2, 'restore'), (3, 'suspend')) as a(k, action)
        where s.router_id = ${tower.routerId}
        order by s.id, a.k`);
      // A few milliseconds per answer widen the window between reading a secret and changing it.
      tower.emulator.latencyMs = 5;
      const setsBefore = tower.emulator.count("/ppp/secret/set");
      await Promise.all([
        first.worker.drain(),
        second.worker.drain(),
        first.worker.drain(),
        second.worker.drain(),
      ]);
      // A row skipped because the other worker held its target is picked up by a later pass (the next
      // poll in production) and finds nothing left to change.
      await first.worker.drain();
      const secrets = tower.emulator.items("/ppp/secret").filter((s) => s.name?.startsWith("race"));
      expect(secrets).toHaveLength(n);
      expect(secrets.every((s) => s.disabled === "true")).toBe(true);
      expect(tower.emulator.count("/ppp/secret/set") - setsBefore).toBe(n);
      const [left] = await queryRows<{ n: number }>(
        database.db,
        sql`select count(*)::int as n from provisioning_outbox where status not in ('done', 'superseded')`,
      );
      expect(Number(left?.n)).toBe(0);
    } finally {
      await first.close();
      await second.close();
      await tower.emulator.stop();
    }
  });
});

describe("one malformed outbox row", () => {
  it("a row whose dropSessions is not a list does not stop every other row from being delivered", async () => {
    const tower = await emulatedRouter(database.db);
    const clock = new FakeClock(new Date());
    const { ctx } = billingContext(database.db, clock);
    const stack = networkStack(database.db, clock);
    const routerId = tower.routerId;
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    await database.db.execute(sql`
      insert into provisioning_outbox (router_id, action, payload, next_attempt_at, created_at)
      values (${routerId}, 'ensure_profile', ${JSON.stringify({ planId: plan.id, dropSessions: "someone" })}::jsonb,
        ${clock.now().toISOString()}::timestamptz, ${clock.now().toISOString()}::timestamptz)`);
    const other = await createPlan(database.db, { priceCents: 120_000 });
    const { subscription } = await createCustomerWithSubscription(ctx, admin, {
      name: "Behind A Bad Row",
      phone: uniquePhone(),
      planId: other.id,
      routerId,
    });
    try {
      const err = await stack.worker.drain().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeNull();
      expect(tower.emulator.find("/ppp/secret", subscription.networkUsername)).toBeDefined();
    } finally {
      await stack.close();
      await tower.emulator.stop();
    }
  });
});
