import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UploadedFile } from "../../src/bots/telegram/fake-uploads.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { activeSubscriber, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { type AdminWorld, auditRows, lastText, OWNER, startAdminWorld } from "./world.ts";

let database: Database;
let world: AdminWorld;
const clock = new FakeClock("2026-05-10T06:00:00Z");
const VIEWER = 6_700_001;

beforeAll(async () => {
  database = await createTestDatabase();
  const { ctx } = billingContext(database.db, clock);
  world = await startAdminWorld(ctx);
  await world.say(OWNER, `/admin_add ${VIEWER} viewer Vic`);
  const plan = await createPlan(database.db, { priceCents: 150_000, code: "home-15", name: "Home 15" });
  await activeSubscriber(ctx, plan.id, "Amina Wekesa");
});
afterAll(async () => {
  await world?.close();
  await database?.close();
});

const documentsTo = (chat: number, from: number) =>
  world.fake.calls
    .slice(from)
    .filter((c) => c.method === "sendDocument" && Number(c.payload.chat_id) === chat)
    .map((c) => ({ ...(c.payload.document as UploadedFile), caption: String(c.payload.caption ?? "") }));

describe("/export", () => {
  it("sends the customers as a CSV file in the import's format, audited", async () => {
    const from = world.fake.calls.length;
    await world.say(OWNER, "/export customers");
    const [file] = documentsTo(OWNER, from);
    expect(file?.filename).toBe("customers-2026-05-10.csv");
    const lines = Buffer.from(file!.bytes).toString("utf8").trim().split("\n");
    expect(lines[0]).toBe("account,name,phone,plan,status,expires,router,username,balance");
    expect(lines.some((l) => l.includes("Amina Wekesa") && l.includes("home-15"))).toBe(true);
    expect(file?.caption).toMatch(/^1 customers, 2026-05-10$/);
    expect(await auditRows(database.db, "data.exported", `tg:${OWNER}`)).toHaveLength(1);
  });

  it("refuses a viewer and an unknown table, sending nothing", async () => {
    const from = world.fake.calls.length;
    await world.say(VIEWER, "/export customers");
    expect(lastText(world.fake, VIEWER)).toMatch(/Your role \(viewer\) may not use \/export/);
    await world.say(OWNER, "/export secrets");
    expect(lastText(world.fake, OWNER)).toMatch(/Say what to export/);
    expect(documentsTo(OWNER, from)).toEqual([]);
    expect(documentsTo(VIEWER, from)).toEqual([]);
  });
});
