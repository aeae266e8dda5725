import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { adminBackgroundFinished } from "../../src/bots/admin/index.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { activeSessionOn } from "../../src/network/active-sessions.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { reconcileRouter } from "../../src/network/reconcile.ts";
import { emulatedRouter, networkStack } from "../network/support.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { type AdminWorld, OWNER, shownIn, startAdminWorld } from "./world.ts";

/** `/sub`'s card is answered at once; "Online now" follows from the router's `/ppp/active`. */

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
let world: AdminWorld;
let emulator: RouterOsEmulator;
let downEmulator: RouterOsEmulator | undefined;
let routerId: number;
let downRouterId: number;
let stack: ReturnType<typeof networkStack>;
let planId: number;
const clock = new FakeClock(new Date("2026-03-10T09:00:00Z"));

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  ({ emulator, routerId } = await emulatedRouter(database.db));
  const down = await emulatedRouter(database.db);
  downRouterId = down.routerId;
  downEmulator = down.emulator;
  // That router is down: nothing listens at its address any more.
  await downEmulator.stop();
  downEmulator = undefined;
  stack = networkStack(database.db, clock, {
    connection: { connectTimeoutMs: 1_000, commandTimeoutMs: 2_000 },
  });
  world = await startAdminWorld(ctx, {
    network: {
      reconcileRouter: (id, options) =>
        reconcileRouter({ db: database.db, clock, pool: stack.pool }, id, options),
      activeSession: (id, kind, username) => activeSessionOn(stack.pool, id, kind, username),
    },
  });
  planId = (await createPlan(database.db, { priceCents: 150_000 })).id;
});
afterAll(async () => {
  await adminBackgroundFinished(database?.db);
  await world?.close();
  await stack?.close();
  await emulator?.stop();
  await downEmulator?.stop();
  await database?.close();
});

async function subscriber(name: string, username: string, router: number) {
  const { customer } = await createCustomerWithSubscription(ctx, admin, {
    name,
    phone: uniquePhone(),
    planId,
    routerId: router,
    networkUsername: username,
  });
  return customer.accountNumber;
}

/** `/sub account`: the texts shown right after the update, then those once the background check ended. */
async function sub(account: string) {
  const before = shownIn(world.fake, OWNER).length;
  await world.say(OWNER, `/sub ${account}`);
  const answered = shownIn(world.fake, OWNER)
    .slice(before)
    .map((c) => String(c.payload.text));
  await adminBackgroundFinished(database.db);
  await world.sendQueued();
  const all = shownIn(world.fake, OWNER)
    .slice(before)
    .map((c) => String(c.payload.text));
  return { answered, all };
}

describe("/sub: online now", () => {
  it("follows the card with yes, since when and the address when the router has a PPP session", async () => {
    const account = await subscriber("Amina Online", "amina.online", routerId);
    const id = emulator.connectPppoe("amina.online");
    emulator.update("/ppp/active", id, { uptime: "1h30m", address: "10.0.7.9" });
    const { answered, all } = await sub(account);
    // The card does not wait for the router.
    expect(answered[0]).toMatch(new RegExp(`^${account} · Amina Online`));
    expect(all).toHaveLength(2);
    expect(all[0]).toBe(answered[0]);
    // 09:00 UTC is 12:00 in Nairobi; up 1 h 30 min.
    expect(all[1]).toMatch(/^Online now: yes \(since .*10:30.*, address 10\.0\.7\.9\) — amina\.online$/);
    expect(emulator.count("/ppp/active/print")).toBeGreaterThan(0);
  });

  it("says no when the router has no session for the user", async () => {
    const account = await subscriber("Baraka Offline", "baraka.offline", routerId);
    emulator.connectPppoe("someone.else");
    const { all } = await sub(account);
    expect(all.at(-1)).toBe("Online now: no — baraka.offline");
  });

  it("answers the card before a slow router has answered", async () => {
    const account = await subscriber("Dama Slow", "dama.slow", routerId);
    emulator.connectPppoe("dama.slow");
    emulator.latencyMs = 400;
    try {
      const { answered, all } = await sub(account);
      expect(answered).toHaveLength(1);
      expect(answered[0]).toMatch(new RegExp(`^${account} · Dama Slow`));
      expect(all.at(-1)).toMatch(/^Online now: yes .* — dama\.slow$/);
    } finally {
      emulator.latencyMs = 0;
    }
  });

  it("says unknown when the router cannot be reached, and the card is still answered", async () => {
    const account = await subscriber("Chebet Down", "chebet.down", downRouterId);
    const { answered, all } = await sub(account);
    expect(answered[0]).toMatch(new RegExp(`^${account} · Chebet Down`));
    expect(all.at(-1)).toBe("Online now: unknown (router unreachable) — chebet.down");
  });
});
