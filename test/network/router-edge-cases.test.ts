import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { expireVouchers, sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import type { Database, Db } from "../../src/db/client.ts";
import type { RouterApi } from "../../src/network/connection.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { type ReconcileDeps, reconcileRouter } from "../../src/network/reconcile.ts";
import { admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres } from "../support/db.ts";
import { emulatedRouter, networkStack } from "./support.ts";

let database: Database;
let router: RouterOsEmulator;
let routerId: number;
let stack: ReturnType<typeof networkStack>;
let ctx: BillingContext;
const clock = new FakeClock(new Date());

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  ({ emulator: router, routerId } = await emulatedRouter(database.db));
  stack = networkStack(database.db, clock);
});
afterAll(async () => {
  await stack.close();
  await router.stop();
  await database.close();
});

/** As in reconcile-worker.test.ts: acts once, when the reconciliation asks for the router's connection. */
function reconcileAtConnect(meanwhile: () => Promise<void>, db: Db = database.db): ReconcileDeps {
  let done = false;
  return {
    db,
    clock,
    pool: {
      async get(id: number): Promise<RouterApi> {
        const api = await stack.pool.get(id);
        if (!done) {
          done = true;
          await meanwhile();
        }
        return api;
      },
    },
  };
}

describe("the delivery worker and the reconciliation at the edges", () => {
  it.runIf(onRealPostgres())(
    "the reconciliation takes the worker's claim lock for a voucher valid on every router: an expired code is not put back",
    async () => {
      const plan = await createPlan(database.db, {
        priceCents: 3_000,
        kind: "hotspot",
        periodUnit: "days",
        periodCount: 1,
        rateLimit: "2M/2M",
      });
      // Sold for any router (routerId null): its rows are `v:*:<id>`.
      const sold = await database.db.transaction((tx) =>
        sellVoucherInTx(tx, ctx, admin, { planId: plan.id, phone: uniquePhone(), language: "en" }),
      );
      await stack.worker.drain();
      const code = sold.code;
      expect(router.find("/ip/hotspot/user", code)).toBeDefined();
      // Drift: the user went missing on this router; the reconciliation will add it back.
      router.delete("/ip/hotspot/user", router.find("/ip/hotspot/user", code)![".id"]!);

      // The reconciliation's lease transaction, paused right after it checked that no outbox row is
      // pending for the voucher (it already holds its claim lock then): the voucher expires, a
      // removal is queued, and the worker claims and delivers it.
      let paused = false;
      const real = database.db;
      const dialect = (real as unknown as { dialect: { sqlToQuery(q: unknown): { sql: string } } }).dialect;
      const wrapped = new Proxy(real, {
        get(target, prop, receiver) {
          if (prop !== "transaction") return Reflect.get(target, prop, receiver);
          return (cb: (tx: unknown) => Promise<unknown>, config?: unknown) =>
            target.transaction(
              (tx) =>
                cb(
                  new Proxy(tx, {
                    get(t, p, r) {
                      if (p !== "execute") return Reflect.get(t, p, r);
                      return async (query: unknown) => {
                        const result = await t.execute(query as never);
                        const text = dialect.sqlToQuery(query).sql;
                        if (!paused && text.includes("select distinct subscription_id, voucher_id")) {
                          paused = true;
                          clock.advance(2 * DAY);
                          await expireVouchers(ctx, job);
                          await stack.worker.drain();
                        }
                        return result;
                      };
                    },
                  }),
                ),
              config as never,
            );
        },
      }) as Db;
      const report = await reconcileRouter(
        reconcileAtConnect(async () => {}, wrapped),
        routerId,
      );
      expect(paused).toBe(true);
      expect(report.ok).toBe(true);
      await stack.worker.drain();
      // The voucher expired: its user must not be on the router.
      expect(router.find("/ip/hotspot/user", code)).toBeUndefined();
    },
  );
});

describe("one malformed outbox row", () => {
  it("a row whose dropSessions is not a list does not stop every other row from being delivered", async () => {
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
    const err = await stack.worker.drain().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeNull();
    expect(router.find("/ppp/secret", subscription.networkUsername)).toBeDefined();
  });
});
