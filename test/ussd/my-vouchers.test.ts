import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { DAY, FakeClock, HOUR, MINUTE } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import { displayPhone } from "../../src/lib/phone.ts";
import { billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { startUssdWorld, type UssdWorld } from "./world.ts";

let database: Database;
let world: UssdWorld;
const clock = new FakeClock("2026-04-01T06:00:00Z");
let ctx: ReturnType<typeof billingContext>["ctx"];
let hour: { id: number };
let day: { id: number };
let twoMonths: { id: number };

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  world = await startUssdWorld(ctx, database.db);
  // The only hotspot plans on sale: "My voucher codes" is the fourth choice.
  hour = await createPlan(database.db, {
    name: "1 Hour",
    kind: "hotspot",
    priceCents: 2_000,
    periodUnit: "hours",
    timeLimitSeconds: 3600,
  });
  day = await createPlan(database.db, {
    name: "Day Pass",
    kind: "hotspot",
    priceCents: 5_000,
    periodUnit: "days",
  });
  twoMonths = await createPlan(database.db, {
    name: "Hotspot 2 months",
    kind: "hotspot",
    priceCents: 200_000,
    periodUnit: "months",
    periodCount: 2,
  });
});
afterAll(async () => {
  await world?.close();
  await database.close();
});

/** A code sold to `phone` as an M-Pesa payment for it sells one (the same use-case). */
async function sold(planId: number, phone: string) {
  const voucher = await database.db.transaction((tx) =>
    sellVoucherInTx(tx, ctx, job, { planId, phone, language: "en" }),
  );
  return voucher.code;
}

/**
 * What a look at the codes could have written: payments, messages, sessions, audit (the plan list a
 * session keeps, so that its numbers keep their meaning, records only what was on screen).
 */
async function written() {
  const [row] = await queryRows(
    database.db,
    sql`select (select count(*) from payment_intents)::int as intents,
               (select count(*) from message_outbox)::int as messages,
               (select count(*) from channel_sessions where state - 'plans' <> '{}'::jsonb or language is not null)::int as sessions,
               (select count(*) from audit_log)::int as audited`,
  );
  return row;
}

/** The codes a phone's "My voucher codes" lists, page after page (`98`), in the order shown. */
async function codesListed(phone: string): Promise<string[]> {
  const ussd = world.dial(phone);
  const codes: string[] = [];
  for (let path = "1*4"; ; path += "*98") {
    const screen = await ussd(path);
    expect(screen.length, screen).toBeLessThanOrEqual(182);
    codes.push(...[...screen.matchAll(/^\d+\. ([A-Z0-9]{8}): /gm)].map((m) => m[1]!));
    if (!screen.includes("\n98. More")) return codes;
  }
}

describe("my voucher codes, on USSD", () => {
  it("shows a buyer the code they paid for by M-Pesa, on screen, and sends nothing", async () => {
    const phone = uniquePhone();
    expect(await world.dial(phone)("1*1*1")).toMatch(/^END Enter your M-Pesa PIN/);
    await world.settle();
    const sms = await world.at.waitFor((m) => m.to === phone && m.message.includes("voucher code"));
    const code = /voucher code is ([A-Z0-9]{8}),/.exec(sms.message)![1]!;

    const before = await written();
    const ussd = world.dial(phone);
    expect(await ussd("1")).toBe(
      "CON Choose a hotspot voucher:\n1. 1 Hour: KES 20\n2. Day Pass: KES 50\n3. Hotspot 2 months: KES 2,000\n4. My voucher codes\n0. Back",
    );
    // Bought at 09:00 Nairobi time, for an hour.
    expect(await ussd("1*4")).toBe(
      `CON Your voucher codes:\n1. ${code}: 1 Hour, until 1 Apr 2026 10:00\n0. Back 00. Home`,
    );
    expect(await ussd("1*4*1")).toBe(
      `CON Voucher code: ${code}\n1 Hour, valid until 1 Apr 2026 10:00.\nUse it as username and password on the hotspot.\n0. Back 00. Home`,
    );
    expect(await ussd("1*4*1*0")).toContain(`1. ${code}: 1 Hour`);
    expect(await written()).toEqual(before);
  });

  it("shows another phone none of them: it is told which number was looked up", async () => {
    const buyer = uniquePhone();
    await sold(day.id, buyer);
    const other = uniquePhone();
    expect(await world.dial(other)("1*4")).toBe(
      `CON No voucher bought with ${displayPhone(other)} in the last 31 days is still valid.\n0. Back 00. Home`,
    );
    expect(await codesListed(buyer)).toHaveLength(1);
  });

  it("lists the five newest codes, newest first, page by page", async () => {
    const phone = uniquePhone();
    const codes: string[] = [];
    for (let i = 0; i < 6; i++) {
      codes.push(await sold(i % 2 ? hour.id : day.id, phone));
      clock.advance(MINUTE);
    }
    expect(await codesListed(phone)).toEqual(codes.slice(1).reverse());
  });

  it("leaves out a code past its expiry, and one bought more than 31 days ago", async () => {
    const phone = uniquePhone();
    const hourCode = await sold(hour.id, phone);
    const dayCode = await sold(day.id, phone);
    const longCode = await sold(twoMonths.id, phone);
    expect(await codesListed(phone)).toEqual([longCode, dayCode, hourCode]);

    // Past the hour, before the expiry job has run: the code no longer works, so it is not offered.
    clock.advance(2 * HOUR);
    expect(await codesListed(phone)).toEqual([longCode, dayCode]);

    // The two months' code still works, but the number may have changed hands since.
    clock.advance(32 * DAY);
    expect(await world.dial(phone)("1*4")).toMatch(/^CON No voucher bought with .+ is still valid\./);
  });

  it("speaks Kiswahili to a buyer who chose it", async () => {
    const phone = uniquePhone();
    const code = await sold(day.id, phone);
    const ussd = world.dial(phone);
    expect(await ussd("3*2*1")).toMatch(/^CON Lugha imewekwa kuwa Kiswahili\./);
    expect(await ussd("3*2*1*1")).toContain("\n4. Vocha zangu\n");
    expect(await ussd("3*2*1*1*4")).toMatch(
      new RegExp(
        `^CON Nambari za vocha zako:\\n1\\. ${code}: Day Pass, hadi \\d+ \\w+ 2026 \\d\\d:\\d\\d\\n`,
      ),
    );
    expect(await ussd("3*2*1*1*4*1")).toMatch(
      new RegExp(`^CON Nambari ya vocha: ${code}\\nDay Pass, inatumika hadi .+\\nItumie kama jina`),
    );
  });
});
