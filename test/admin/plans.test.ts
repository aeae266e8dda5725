import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { plans, provisioningOutbox } from "../../src/db/schema/index.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { type AdminWorld, auditRows, lastText, OWNER, startAdminWorld } from "./world.ts";

let database: Database;
let world: AdminWorld;
const clock = new FakeClock("2026-04-01T06:00:00Z");
const SUPPORT = 6_200_002;
const VIEWER = 6_200_004;

beforeAll(async () => {
  database = await createTestDatabase();
  const { ctx } = billingContext(database.db, clock);
  world = await startAdminWorld(ctx);
  await world.say(OWNER, `/admin_add ${SUPPORT} support Sam`);
  await world.say(OWNER, `/admin_add ${VIEWER} viewer Vic`);
});
afterAll(async () => {
  await world?.close();
  await database?.close();
});

const planByCode = async (code: string) =>
  (await database.db.select().from(plans).where(eq(plans.code, code)))[0];

describe("/plans, /plan_add, /plan_edit", () => {
  it("the owner adds a plan; everyone lists it; audited with the Telegram id", async () => {
    await world.say(VIEWER, "/plans");
    expect(lastText(world.fake, VIEWER)).toBe("No plans yet. Add one with /plan_add.");

    await world.say(OWNER, "/plan_add home-10 pppoe 1,500 1 month 5M/10M Home 10 Mbps");
    expect(lastText(world.fake, OWNER)).toBe(
      "✅ Plan added: home-10 · Home 10 Mbps · pppoe · KES 1,500 per month · 5M/10M",
    );
    const plan = await planByCode("home-10");
    expect(plan).toMatchObject({
      kind: "pppoe",
      priceCents: 150_000,
      periodUnit: "months",
      periodCount: 1,
      rateLimit: "5M/10M",
      name: "Home 10 Mbps",
      active: true,
    });
    expect((await auditRows(database.db, "plan.created", `tg:${OWNER}`)).map((r) => r.entityId)).toEqual([
      String(plan!.id),
    ]);

    await world.say(OWNER, "/plan_add day-pass hotspot 50 1 day 2M/2M Day pass");
    await world.say(VIEWER, "/plans");
    expect(lastText(world.fake, VIEWER)).toBe(
      [
        "2 plans:",
        "day-pass · Day pass · hotspot · KES 50 per day · 2M/2M",
        "home-10 · Home 10 Mbps · pppoe · KES 1,500 per month · 5M/10M",
      ].join("\n"),
    );
  });

  it("bad arguments are answered and change nothing; the core's refusals are shown", async () => {
    const before = (await database.db.select().from(plans)).length;
    await world.say(OWNER, "/plan_add");
    expect(lastText(world.fake, OWNER)).toMatch(/^Say the plan's code.*\nUsage: \/plan_add/);
    await world.say(OWNER, "/plan_add x-1 fibre 100 1 month 5M/5M X");
    expect(lastText(world.fake, OWNER)).toMatch(/"fibre" is not a kind: pppoe or hotspot/);
    await world.say(OWNER, "/plan_add x-1 pppoe -5 1 month 5M/5M X");
    expect(lastText(world.fake, OWNER)).toMatch(/more than zero/);
    await world.say(OWNER, "/plan_add x-1 pppoe 100 1 fortnight 5M/5M X");
    expect(lastText(world.fake, OWNER)).toMatch(/"fortnight" is not a period unit/);
    await world.say(OWNER, "/plan_add x-1 pppoe 100 1 month 5M/5M");
    expect(lastText(world.fake, OWNER)).toMatch(/Say the plan's name/);
    // The billing core's own checks come back as they are.
    await world.say(OWNER, "/plan_add X_1 pppoe 100 1 month fast X");
    expect(lastText(world.fake, OWNER)).toMatch(/code: 2–32 lower-case.*; speed: upload\/download/);
    await world.say(OWNER, "/plan_add home-10 pppoe 100 1 month 5M/5M Again");
    expect(lastText(world.fake, OWNER)).toBe("a plan with code home-10 exists");
    expect((await database.db.select().from(plans)).length).toBe(before);

    await world.say(OWNER, "/plan_edit home-10 colour blue");
    expect(lastText(world.fake, OWNER)).toMatch(
      /"colour" is not a field: price, speed, name, name_sw, cap_gb, active/,
    );
    await world.say(OWNER, "/plan_edit nosuch price 100");
    expect(lastText(world.fake, OWNER)).toBe("no plan with code nosuch");
    await world.say(OWNER, "/plan_edit home-10 speed fast");
    expect(lastText(world.fake, OWNER)).toMatch(/speed: upload\/download/);
    await world.say(OWNER, "/plan_edit home-10 cap_gb lots");
    expect(lastText(world.fake, OWNER)).toMatch(/is not a data cap/);
    expect(await planByCode("home-10")).toMatchObject({ priceCents: 150_000, rateLimit: "5M/10M" });
  });

  it("support and viewers may not add or edit", async () => {
    await world.say(SUPPORT, "/plan_add s-1 pppoe 100 1 month 5M/5M S");
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/plan_add/);
    await world.say(VIEWER, "/plan_edit home-10 price 1");
    expect(lastText(world.fake, VIEWER)).toMatch(/Your role \(viewer\) may not use \/plan_edit/);
    expect(await planByCode("s-1")).toBeUndefined();
    expect((await planByCode("home-10"))!.priceCents).toBe(150_000);
    expect((await auditRows(database.db, "admin.refused", `tg:${VIEWER}`)).map((r) => r.entityId)).toContain(
      "plan_edit",
    );
  });

  it("/plan_edit changes each field through the core, audited; speed and cap go to the routers", async () => {
    const profiles = async () =>
      (await database.db.select().from(provisioningOutbox)).filter((r) => r.action === "ensure_profile")
        .length;
    const profilesBefore = await profiles();
    await world.say(OWNER, "/plan_edit home-10 price 1,800");
    expect(lastText(world.fake, OWNER)).toMatch(
      /KES 1,800 per month.*\nThe new price applies from each subscription's next period/,
    );
    await world.say(OWNER, "/plan_edit home-10 speed 10M/20M");
    await world.say(OWNER, "/plan_edit home-10 cap_gb 100");
    await world.say(OWNER, "/plan_edit home-10 name_sw Nyumbani 10");
    await world.say(OWNER, "/plan_edit home-10 name Home 20");
    expect(lastText(world.fake, OWNER)).toBe(
      "✅ Plan changed: home-10 · Home 20 / Nyumbani 10 · pppoe · KES 1,800 per month · 10M/20M, cap 100 GB",
    );
    expect(await profiles()).toBe(profilesBefore + 2);
    await world.say(OWNER, "/plan_edit home-10 active no");
    expect(lastText(world.fake, OWNER)).toMatch(/· retired$/);
    expect(await planByCode("home-10")).toMatchObject({
      priceCents: 180_000,
      rateLimit: "10M/20M",
      dataCapBytes: 100 * 1024 ** 3,
      nameSw: "Nyumbani 10",
      name: "Home 20",
      active: false,
    });
    const updates = await auditRows(database.db, "plan.updated", `tg:${OWNER}`);
    expect(updates).toHaveLength(6);
    expect(updates[0]!.details).toMatchObject({
      changed: { priceCents: 180_000 },
      before: { priceCents: 150_000 },
    });
  });
});
