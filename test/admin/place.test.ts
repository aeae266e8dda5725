import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { FakeClock } from "../../src/clock.ts";
import { provisioningOutbox, routers, subscriptions } from "../../src/db/schema/index.ts";
import { admin, createPlan, uniquePhone } from "../support/billing.ts";
import { adminWorldForFile, auditRows, lastMenuIn, lastText, OWNER } from "./world.ts";

/** `/place`: a subscriber put on a router, or moved to another, asked first. */

const clock = new FakeClock("2026-05-01T08:00:00Z");
const SUPPORT = 6_600_002;
const world = adminWorldForFile(clock, [{ id: SUPPORT, role: "support", name: "Sam" }]);

const routerNamed = async (name: string) => {
  const [row] = await world.db
    .insert(routers)
    .values({ name, host: "10.0.0.1", port: 8728, username: "tandao", passwordEncrypted: "x" })
    .returning({ id: routers.id });
  return row!.id;
};

describe("/place", () => {
  it("puts a subscriber added without a router on one, then moves them, each once confirmed", async () => {
    const kibera = await routerNamed("Kibera-1");
    const kawangware = await routerNamed("Kawangware");
    const plan = await createPlan(world.db, { priceCents: 100_000 });
    const { customer, subscription } = await createCustomerWithSubscription(world.ctx, admin, {
      name: "No Router Yet",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const acct = customer.accountNumber;
    const routerOf = async () =>
      (await world.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id)))[0]!.routerId;

    await world.say(SUPPORT, `/place ${acct} Kibera-1`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/place/);
    for (const [typed, answer] of [
      ["/place", /Say the account number/],
      [`/place ${acct}`, /Say which router/],
      [`/place NOSUCH9 Kibera-1`, /^No account NOSUCH9\. Try \/find\.$/],
      [`/place ${acct} Nowhere`, /^No router "Nowhere"\. \/routers lists them\.$/],
    ] as const) {
      await world.say(OWNER, typed);
      expect(lastText(world.fake, OWNER)).toMatch(answer);
    }

    await world.say(OWNER, `/place ${acct} kibera-1`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      new RegExp(`^No Router Yet \\(pending\\): Put ${acct} on router Kibera-1\\?`),
    );
    expect(await routerOf()).toBeNull();
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toBe(
      `✅ ${acct} is on Kibera-1 now: its router account is being set up.`,
    );
    expect(await routerOf()).toBe(kibera);

    await world.say(OWNER, `/place ${acct} Kibera-1`);
    expect(lastText(world.fake, OWNER)).toBe(`${acct} is already on Kibera-1.`);
    await world.say(OWNER, `/place ${acct} Kawangware`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      new RegExp(`Move ${acct} from router Kibera-1 to Kawangware\\?`),
    );
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toBe(
      `✅ ${acct} is on Kawangware now: its router account is being set up there and removed from Kibera-1.`,
    );
    expect(await routerOf()).toBe(kawangware);
    const rows = await world.db
      .select({ routerId: provisioningOutbox.routerId, action: provisioningOutbox.action })
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, subscription.id))
      .orderBy(provisioningOutbox.id);
    expect(rows.slice(-3)).toEqual([
      { routerId: kibera, action: "ensure_account" },
      { routerId: kawangware, action: "ensure_account" },
      { routerId: kibera, action: "ensure_account" },
    ]);
    expect((await auditRows(world.db, "subscription.placed", `tg:${OWNER}`)).length).toBe(2);
  });
});
