import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { updatePlan } from "../../src/billing/plans.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { resumeSubscription, suspendSubscription } from "../../src/billing/suspend-resume.ts";
import { expireVouchers, sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import type { Database, Db } from "../../src/db/client.ts";
import type { RouterApi } from "../../src/network/connection.ts";
import { profileName } from "../../src/network/desired.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { type ReconcileDeps, reconcileRouter } from "../../src/network/reconcile.ts";
import { admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres } from "../support/db.ts";
import { emulatedRouter, networkStack } from "./support.ts";

/**
 * The reconciliation reads the database and the router, then writes; the delivery worker changes
 * the same entries meanwhile. Whatever the worker delivers in between must not be undone.
 */

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

/**
 * The reconciliation's view of the router, through which the test acts at one chosen moment, once:
 * when the reconciliation, having read the database, asks for the router's connection (`"connect"`),
 * or just before the first command matching `when` reaches the router.
 */
function reconcileWith(
  when: "connect" | ((command: string) => boolean),
  meanwhile: () => Promise<void>,
  db: Db = database.db,
): ReconcileDeps & { acted: () => boolean } {
  let done = false;
  return {
    acted: () => done,
    db,
    clock,
    pool: {
      async get(id: number): Promise<RouterApi> {
        const api = await stack.pool.get(id);
        if (!done && when === "connect") {
          done = true;
          await meanwhile();
        }
        return {
          // What happens meanwhile, the command's wait for its turn on the connection.
          async run(command, params, options) {
            if (!done && when !== "connect" && when(command)) {
              done = true;
              await meanwhile();
            }
            return api.run(command, params, options);
          },
        };
      },
    },
  };
}

/** A subscriber on the router who paid their first period (the worker has not run yet). */
async function payingSubscriber(planId: number, name: string) {
  const { customer, subscription, invoice } = await createCustomerWithSubscription(ctx, admin, {
    name,
    phone: uniquePhone(),
    planId,
    routerId,
  });
  await applyPayment(ctx, admin, {
    customerId: customer.id,
    method: "cash",
    provider: "cash",
    providerRef: `first-${customer.id}`,
    amountCents: invoice.amountCents,
  });
  return subscription;
}

/** A paying subscriber on the router whom an admin then suspended; router and reconciliation agree. */
async function suspendedSubscriber(name: string) {
  const plan = await createPlan(database.db, { priceCents: 100_000 });
  const subscription = await payingSubscriber(plan.id, name);
  await suspendSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "abuse report" });
  await stack.worker.drain();
  const reconciled = await reconcileRouter({ db: database.db, clock, pool: stack.pool }, routerId);
  expect(reconciled.ok).toBe(true);
  expect(router.find("/ppp/secret", subscription.networkUsername)?.disabled).toBe("true");
  return subscription;
}

describe("reconciliation next to the delivery worker", () => {
  it("a restore delivered between the reconciliation's read and its write wins: the secret stays enabled, the session up", async () => {
    const subscriber = await suspendedSubscriber("Restored Meanwhile");
    const name = subscriber.networkUsername;
    const deps = reconcileWith("connect", async () => {
      // The database was read (suspended); before the router is, the admin restores the
      // subscriber, the worker delivers it and the subscriber connects.
      await resumeSubscription(ctx, admin, { subscriptionId: subscriber.id, reason: "paid in cash" });
      await stack.worker.drain();
      expect(router.find("/ppp/secret", name)?.disabled).toBe("false");
      router.connectPppoe(name);
    });
    const report = await reconcileRouter(deps, routerId);
    expect(report.ok).toBe(true);
    expect(deps.acted()).toBe(true);
    expect(router.find("/ppp/secret", name)?.disabled).toBe("false");
    expect(router.find("/ppp/active", name)).toBeDefined();
    // Nothing is left for the worker either: the router already holds what the database wants.
    await stack.worker.drain();
    expect(router.find("/ppp/secret", name)?.disabled).toBe("false");
  });

  it("a voucher sold and delivered between the reconciliation's read and its write is not removed as unknown", async () => {
    const plan = await createPlan(database.db, {
      priceCents: 3_000,
      kind: "hotspot",
      periodUnit: "days",
      rateLimit: "2M/2M",
    });
    let code = "";
    const deps = reconcileWith("connect", async () => {
      const sold = await database.db.transaction((tx) =>
        sellVoucherInTx(tx, ctx, admin, { planId: plan.id, phone: uniquePhone(), language: "en", routerId }),
      );
      code = sold.code;
      await stack.worker.drain();
      expect(router.find("/ip/hotspot/user", code)).toBeDefined();
    });
    const report = await reconcileRouter(deps, routerId);
    expect(report.ok).toBe(true);
    expect(deps.acted()).toBe(true);
    expect(code).not.toBe("");
    expect(router.find("/ip/hotspot/user", code)).toMatchObject({ password: code });
  });

  it("a restore asked for while the reconciliation writes waits for its writes, then is delivered", async () => {
    const subscriber = await suspendedSubscriber("Restored During Write");
    const name = subscriber.networkUsername;
    // Someone enabled the suspended subscriber by hand: the reconciliation will disable the secret.
    router.update("/ppp/secret", router.find("/ppp/secret", name)![".id"]!, { disabled: "false" });
    const deps = reconcileWith(
      (command) => command === "/ppp/secret/set",
      async () => {
        // Just before that write goes out, the subscriber pays and the worker runs.
        await resumeSubscription(ctx, admin, { subscriptionId: subscriber.id, reason: "paid in cash" });
        await stack.worker.drain();
      },
    );
    const report = await reconcileRouter(deps, routerId);
    expect(report.ok).toBe(true);
    expect(deps.acted()).toBe(true);
    // The worker runs again after the reconciliation (its next poll): the restore is not lost.
    await stack.worker.drain();
    expect(router.find("/ppp/secret", name)?.disabled).toBe("false");
  });

  it("a repair held up past the reconciliation's lease is not sent over the restore the worker delivered meanwhile", async () => {
    const subscriber = await suspendedSubscriber("Restored After The Lease");
    const name = subscriber.networkUsername;
    // Someone enabled the suspended subscriber by hand: the reconciliation will disable the secret.
    router.update("/ppp/secret", router.find("/ppp/secret", name)![".id"]!, { disabled: "false" });
    const deps = reconcileWith(
      (command) => command === "/ppp/secret/set",
      async () => {
        // That write waits (a busy connection) until the reconciliation's lease is over; the
        // subscriber pays and the worker, free to deliver again, restores them.
        clock.advance(130_000);
        await resumeSubscription(ctx, admin, { subscriptionId: subscriber.id, reason: "paid in cash" });
        await stack.worker.drain();
      },
    );
    const report = await reconcileRouter(deps, routerId);
    expect(deps.acted()).toBe(true);
    expect(report.ok).toBe(true);
    expect(router.find("/ppp/secret", name)?.disabled).toBe("false");
  });
});

describe("a voucher valid on every router", () => {
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
        reconcileWith("connect", async () => {}, wrapped),
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

describe("a plan's speed changed while the reconciliation runs", () => {
  it("a new speed the worker delivered after the reconciliation read the plans is not put back to the old one", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000, rateLimit: "2M/4M" });
    const profile = profileName(plan);
    await payingSubscriber(plan.id, "Speed Watcher");
    await stack.worker.drain();
    expect(router.find("/ppp/profile", profile)?.["rate-limit"]).toBe("2M/4M");

    // The reconciliation has read the plans (2M/4M); the admin raises the speed and the worker
    // delivers it before the reconciliation reads the router.
    const deps = reconcileWith("connect", async () => {
      await updatePlan(ctx, admin, plan.code, { rateLimit: "10M/20M" });
      await stack.worker.drain();
      expect(router.find("/ppp/profile", profile)?.["rate-limit"]).toBe("10M/20M");
    });
    const report = await reconcileRouter(deps, routerId);
    expect(deps.acted()).toBe(true);
    expect(report.ok).toBe(true);
    expect(router.find("/ppp/profile", profile)?.["rate-limit"]).toBe("10M/20M");
  });
  it("a speed the worker delivered while the reconciliation was writing the profile is not overwritten with the old one", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000, rateLimit: "2M/4M" });
    const profile = profileName(plan);
    await payingSubscriber(plan.id, "Speed Watcher Too");
    await stack.worker.drain();
    // Someone slowed the profile down by hand: the reconciliation will put the plan's speed back.
    router.update("/ppp/profile", router.find("/ppp/profile", profile)![".id"]!, { "rate-limit": "1M/1M" });

    // Just before that write goes out, the admin raises the speed and the worker runs.
    const deps = reconcileWith(
      (command) => command === "/ppp/profile/set",
      async () => {
        await updatePlan(ctx, admin, plan.code, { rateLimit: "10M/20M" });
        await stack.worker.drain();
      },
    );
    const report = await reconcileRouter(deps, routerId);
    expect(deps.acted()).toBe(true);
    expect(report.ok).toBe(true);
    // The worker runs again after the reconciliation (its next poll).
    await stack.worker.drain();
    expect(router.find("/ppp/profile", profile)?.["rate-limit"]).toBe("10M/20M");
  });
});

describe("a plan's speed changed while a subscriber is delivered", () => {
  it("the subscriber's delivery, which read the old speed, does not put it back on the profile", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000, rateLimit: "2M/4M" });
    const profile = profileName(plan);
    await payingSubscriber(plan.id, "First On The Plan");
    await stack.worker.drain();
    const joining = await payingSubscriber(plan.id, "Joining The Plan");
    // Another instance delivers the new subscriber: it has read their plan (2M/4M) when it is
    // handed the router's connection; then the admin raises the speed and this instance delivers it.
    const other = networkStack(database.db, clock);
    let raised = false;
    other.pool.handingOut = async () => {
      if (raised) return;
      raised = true;
      await updatePlan(ctx, admin, plan.code, { rateLimit: "10M/20M" });
      await stack.worker.drain();
      expect(router.find("/ppp/profile", profile)?.["rate-limit"]).toBe("10M/20M");
    };
    try {
      await other.worker.drain();
    } finally {
      await other.close();
    }
    expect(raised).toBe(true);
    expect(router.find("/ppp/secret", joining.networkUsername)?.disabled).toBe("false");
    expect(router.find("/ppp/profile", profile)?.["rate-limit"]).toBe("10M/20M");
  });
});
