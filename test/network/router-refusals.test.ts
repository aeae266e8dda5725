import { and, eq, type SQL } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox, provisioningOutbox } from "../../src/db/schema/index.ts";
import { RouterConnection } from "../../src/network/connection.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack } from "./support.ts";

/**
 * What the router refuses reaches the outbox: the row keeps RouterOS's own text as its error, is
 * retried with back-off (the refusal may be temporary), and is given up with an admin alert.
 */

const ADMIN = "+254700000777";
let database: Database;
let router: RouterOsEmulator;
let routerId: number;
let stack: ReturnType<typeof networkStack>;
const clock = new FakeClock(new Date());

beforeAll(async () => {
  database = await createTestDatabase();
  ({ emulator: router, routerId } = await emulatedRouter(database.db));
  stack = networkStack(database.db, clock, { worker: { maxAttempts: 3, adminPhone: ADMIN } });
});
afterEach(() => {
  vi.restoreAllMocks();
  router.faults.interleaveMs = 0;
});
afterAll(async () => {
  await stack.close();
  await router.stop();
  await database.close();
});

const ctx = () => billingContext(database.db, clock).ctx;

/** Delivers until the row is settled, letting each back-off pass; returns the row after each try. */
async function deliverUntilSettled(where: SQL) {
  const history: Array<{ status: string; attempts: number; lastError: string | null }> = [];
  for (let i = 0; i < 6; i++) {
    await stack.worker.drain();
    const [row] = await database.db.select().from(provisioningOutbox).where(where);
    history.push({ status: row!.status, attempts: row!.attempts, lastError: row!.lastError });
    if (row!.status !== "pending") break;
    clock.advance(10 * 60_000);
  }
  return history;
}

async function alertsMentioning(text: string) {
  const alerts = await database.db
    .select()
    .from(messageOutbox)
    .where(and(eq(messageOutbox.template, "admin_alert"), eq(messageOutbox.recipient, ADMIN)));
  return alerts.filter((a) => String(a.params.text).includes(text));
}

describe("a command the router refuses", () => {
  it("a misspelt attribute: refused by the router, its text recorded, retried, then given up with an alert", async () => {
    // Models a typo in the driver: `limit-uptime` goes out as `limit-uptme`.
    const run = RouterConnection.prototype.run;
    vi.spyOn(RouterConnection.prototype, "run").mockImplementation(function (
      this: RouterConnection,
      command: string,
      params: string[] = [],
    ) {
      return run.call(
        this,
        command,
        params.map((p) => p.replace(/^=limit-uptime=/, "=limit-uptme=")),
      );
    });
    const plan = await createPlan(database.db, {
      priceCents: 5_000,
      kind: "hotspot",
      periodUnit: "days",
      rateLimit: "1M/2M",
    });
    const sold = await database.db.transaction((tx) =>
      sellVoucherInTx(tx, ctx(), admin, { planId: plan.id, phone: uniquePhone(), language: "en", routerId }),
    );
    const history = await deliverUntilSettled(eq(provisioningOutbox.voucherId, sold.voucherId));
    expect(history.map((h) => [h.status, h.attempts])).toEqual([
      ["pending", 1],
      ["pending", 2],
      ["dead", 3],
    ]);
    for (const h of history) expect(h.lastError).toBe("unknown parameter limit-uptme");
    expect(router.find("/ip/hotspot/user", sold.code)).toBeUndefined();
    expect(await alertsMentioning("unknown parameter limit-uptme")).toHaveLength(1);
  });

  it("a plan whose rate limit RouterOS cannot read: its profile is refused, the row given up, the admin told", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000, rateLimit: "fast please" });
    const { subscription } = await createCustomerWithSubscription(ctx(), admin, {
      name: "Rate Typo",
      phone: uniquePhone(),
      planId: plan.id,
      routerId,
    });
    // A new hour: the alert of the previous test (one per router and hour) does not hide this one.
    clock.advance(60 * 60_000);
    const history = await deliverUntilSettled(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(history.at(-1)).toMatchObject({
      status: "dead",
      attempts: 3,
      lastError: "invalid value for argument rate-limit",
    });
    expect(router.find("/ppp/profile", `tandao-${plan.code}`)).toBeUndefined();
    expect(router.find("/ppp/secret", subscription.networkUsername)).toBeUndefined();
    expect(await alertsMentioning("invalid value for argument rate-limit")).toHaveLength(1);
  });
});

describe("a router that interleaves its replies", () => {
  it("gets every subscriber right when the worker's concurrent commands are answered mixed together", async () => {
    router.faults.interleaveMs = 3;
    const batches = router.interleavedBatches;
    const plan = await createPlan(database.db, { priceCents: 100_000, rateLimit: "3M/6M" });
    const hotspot = await createPlan(database.db, {
      priceCents: 2_000,
      kind: "hotspot",
      periodUnit: "hours",
      periodCount: 24,
      rateLimit: "512k/1M",
      dataCapBytes: 1_000_000_000,
    });
    const subs = [];
    for (let i = 0; i < 20; i++) {
      const { subscription } = await createCustomerWithSubscription(ctx(), admin, {
        name: `Mixed ${i}`,
        phone: uniquePhone(),
        planId: plan.id,
        routerId,
      });
      subs.push(subscription);
    }
    const vouchers = [];
    for (let i = 0; i < 10; i++) {
      vouchers.push(
        await database.db.transaction((tx) =>
          sellVoucherInTx(tx, ctx(), admin, {
            planId: hotspot.id,
            phone: uniquePhone(),
            language: "sw",
            routerId,
          }),
        ),
      );
    }
    await stack.worker.drain();
    for (const s of subs) {
      expect(router.find("/ppp/secret", s.networkUsername)).toMatchObject({
        password: s.networkPassword,
        profile: `tandao-${plan.code}`,
        comment: `tandao:sub:${s.id}`,
        disabled: "true",
      });
    }
    for (const v of vouchers) {
      expect(router.find("/ip/hotspot/user", v.code)).toMatchObject({
        profile: `tandao-${hotspot.code}`,
        "limit-uptime": "1d",
        "limit-bytes-total": "1000000000",
        comment: `tandao:voucher:${v.voucherId}`,
      });
    }
    expect(router.find("/ip/hotspot/user/profile", `tandao-${hotspot.code}`)).toMatchObject({
      "rate-limit": "512k/1M",
      "on-login": `# tandao:plan:${hotspot.id}`,
    });
    expect(router.interleavedBatches).toBeGreaterThan(batches);
  });
});
