import { and, eq, inArray, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createVoucherBatch, markVouchersSold } from "../../src/billing/vouchers.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import { payments, provisioningOutbox, vouchers } from "../../src/db/schema/index.ts";
import { eventually } from "../payments/dispatch-support.ts";
import { admin, createPlan } from "../support/billing.ts";
import { onRealPostgres } from "../support/db.ts";
import { holdLock, waitingForLocks } from "../support/locks.ts";
import { adminWorldForFile, auditRows, lastMenuIn, lastText, OWNER } from "./world.ts";

/**
 * `/sold`: printed vouchers a reseller sold go live on the routers, asked first. Until then a
 * printed code does not log in (the portal says it is not activated yet).
 */

const clock = new FakeClock("2026-05-01T08:00:00Z");
const SUPPORT = 6_400_002;
const world = adminWorldForFile(clock, [{ id: SUPPORT, role: "support", name: "Sam" }]);

async function dayPassBatch(quantity: number) {
  const plan = await createPlan(world.db, {
    priceCents: 5_000,
    kind: "hotspot",
    name: "Day pass",
    periodUnit: "days",
    periodCount: 1,
  });
  return createVoucherBatch(world.ctx, admin, { planId: plan.id, quantity });
}

const statusesOf = async (codes: string[]) => {
  const rows = await world.db.select().from(vouchers).where(inArray(vouchers.code, codes));
  return Object.fromEntries(rows.map((v) => [v.code, v.status]));
};

const liveOnRouters = async (codes: string[]) => {
  const rows = await world.db
    .select({ id: provisioningOutbox.id })
    .from(provisioningOutbox)
    .innerJoin(vouchers, eq(vouchers.id, provisioningOutbox.voucherId))
    .where(and(inArray(vouchers.code, codes), eq(provisioningOutbox.action, "ensure_voucher")));
  return rows.length;
};

/** Cash recorded for sales naming the voucher of `code` (by its number: the code is never written there). */
const cashNaming = async (code: string) => {
  const [voucher] = await world.db.select({ id: vouchers.id }).from(vouchers).where(eq(vouchers.code, code));
  const named = await world.db
    .select({ amountCents: payments.amountCents, accountReference: payments.accountReference })
    .from(payments)
    .where(sql`${payments.accountReference} ~ ${`^vouchers( #\\d+)* #${voucher!.id}( |$)`}`);
  for (const row of named) expect(row.accountReference).not.toContain(code);
  return named.map(({ amountCents }) => ({ amountCents }));
};

describe("/sold", () => {
  it("marks named codes sold once confirmed: live on the routers, lasting their plan's validity from now", async () => {
    clock.set("2026-05-01T08:00:00Z");
    const { codes } = await dayPassBatch(4);
    const [a, b, c] = codes as [string, string, string];

    for (const [typed, answer] of [
      ["/sold", /Usage: \/sold <code…>/],
      ["/sold batch", /Say the batch's number/],
      ["/sold batch twelve", /Say the batch's number/],
      ["/sold batch 999999", /^No batch 999999\.$/],
      [`/sold ${a} 0OIL1234`, /^Not a voucher code: 0OIL1234\./],
    ] as const) {
      await world.say(SUPPORT, typed);
      expect(lastText(world.fake, SUPPORT)).toMatch(answer);
    }

    // Typed as people type them: lower case, with a dash.
    await world.say(SUPPORT, `/sold ${a.toLowerCase()} ${b.slice(0, 4)}-${b.slice(4)} 22222222`);
    const question = lastMenuIn(world.fake, SUPPORT);
    expect(String(question.payload.text)).toMatch(
      /^Mark 2 vouchers sold\? They go live on the routers now:\n2 × Day pass \(each lasts 1 day from now\)\nLeft out:\n22222222: no such code\n/,
    );
    expect(await statusesOf([a, b])).toEqual({ [a]: "available", [b]: "available" });

    await world.press(SUPPORT, "Confirm");
    expect(lastText(world.fake, SUPPORT)).toBe("✅ 2 vouchers sold: live on the routers now.");
    expect(await statusesOf([a, b, c])).toEqual({ [a]: "sold", [b]: "sold", [c]: "available" });
    const [sold] = await world.db.select().from(vouchers).where(eq(vouchers.code, a));
    expect(sold!.expiresAt.toISOString()).toBe("2026-05-02T08:00:00.000Z");
    expect(await liveOnRouters([a, b, c])).toBe(2);
    const audited = await auditRows(world.db, "voucher.marked_sold", `tg:${SUPPORT}`);
    expect(audited.map((r) => r.details)).toEqual([{ requested: 2, sold: 2, paymentId: null }]);

    await world.say(SUPPORT, `/sold ${a}`);
    expect(lastText(world.fake, SUPPORT)).toBe(`None of those can be sold.\n${a}: already sold`);
  });

  it("a code sold meanwhile is left out when the question is confirmed, and said so", async () => {
    clock.set("2026-05-01T09:00:00Z");
    const { codes } = await dayPassBatch(2);
    const [a, b] = codes as [string, string];
    await world.say(OWNER, `/sold ${a} ${b}`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(/^Mark 2 vouchers sold\?/);
    await markVouchersSold(world.ctx, admin, { codes: [b] });
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toBe(
      "✅ 1 voucher sold: live on the routers now. 1 code was not unsold any more.",
    );
    expect(await liveOnRouters([a, b])).toBe(2);
  });

  it("with cash paid, a code sold meanwhile means nothing is sold nor recorded at Confirm, and said so", async () => {
    clock.set("2026-05-01T10:00:00Z");
    const { codes } = await dayPassBatch(2);
    const [a, b] = codes as [string, string];
    await world.say(OWNER, `/sold ${a} ${b} paid 100`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      /^Mark 2 vouchers sold, and record KES 100 cash received for them\?/,
    );
    // Another admin sells one of them before this question is confirmed.
    await markVouchersSold(world.ctx, admin, { codes: [b] });
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toBe(
      "Nothing was sold and no cash recorded: 1 of the 2 codes the KES 100 was for was sold, used or expired since you asked.\nSend /sold again for the codes still unsold, with what was paid for them.",
    );
    expect(await statusesOf([a, b])).toEqual({ [a]: "available", [b]: "sold" });
    expect(await cashNaming(a)).toEqual([]);

    await world.say(OWNER, `/sold ${a} paid 50`);
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toBe(
      "✅ 1 voucher sold: live on the routers now. KES 50 recorded as cash received.",
    );
    expect(await cashNaming(a)).toEqual([{ amountCents: 5_000 }]);
  });

  it("records the cash a reseller paid for a batch as money received, counted in what was collected", async () => {
    clock.set("2026-05-03T08:00:00Z");
    const { batch } = await dayPassBatch(3);
    await world.say(OWNER, `/sold batch ${batch.id} paid lots`);
    expect(lastText(world.fake, OWNER)).toMatch(/"lots" is not an amount/);
    await world.say(OWNER, `/sold batch ${batch.id} paid 1,500`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      new RegExp(
        `^Mark 3 unsold vouchers of batch ${batch.id} sold, and record KES 1,500 cash received for them\\?`,
      ),
    );
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toBe(
      "✅ 3 vouchers sold: live on the routers now. KES 1,500 recorded as cash received.",
    );
    const [cash] = await world.db
      .select()
      .from(payments)
      .where(eq(payments.accountReference, `voucher batch ${batch.id}`));
    expect(cash).toMatchObject({ method: "cash", status: "applied", customerId: null, amountCents: 150_000 });
    // Nothing sold, nothing recorded.
    await world.say(OWNER, `/sold batch ${batch.id} paid 1,500`);
    expect(lastText(world.fake, OWNER)).toMatch(/^None of those can be sold\./);
    expect(
      await world.db
        .select()
        .from(payments)
        .where(eq(payments.accountReference, `voucher batch ${batch.id}`)),
    ).toHaveLength(1);
  });

  it("sells what is left of a whole batch, and refuses codes past their unsold date", async () => {
    clock.set("2026-05-02T08:00:00Z");
    const { batch, codes } = await dayPassBatch(5);
    await markVouchersSold(world.ctx, admin, { codes: [codes[0]!, codes[1]!] });

    await world.say(OWNER, `/sold batch ${batch.id}`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      new RegExp(
        `^Mark 3 unsold vouchers of batch ${batch.id} sold\\? They go live on the routers now:\\n3 × Day pass \\(each lasts 1 day from now\\)\\nLeft out:\\n2 codes of the batch already sold, used or expired\\n`,
      ),
    );
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toBe("✅ 3 vouchers sold: live on the routers now.");
    expect(Object.values(await statusesOf(codes))).toEqual(Array(5).fill("sold"));
    await world.say(OWNER, `/sold batch ${batch.id}`);
    expect(lastText(world.fake, OWNER)).toBe(
      "None of those can be sold.\n5 codes of the batch already sold, used or expired",
    );

    const unsold = await dayPassBatch(1);
    clock.advance(world.ctx.settings.unsoldVoucherDays * DAY);
    await world.say(OWNER, `/sold ${unsold.codes[0]}`);
    expect(lastText(world.fake, OWNER)).toBe(
      `None of those can be sold.\n${unsold.codes[0]}: past its unsold date`,
    );
    expect(await statusesOf(unsold.codes)).toEqual({ [unsold.codes[0]!]: "available" });
  });
});

/**
 * Confirm with cash against a competing sale of one of its codes in another session. Both lock the
 * codes; a third session holds that code first, so the one that waited first gets it first.
 */
describe.runIf(onRealPostgres())("/sold with cash racing another sale of one of its codes", () => {
  async function race(first: "confirm" | "competitor") {
    const { codes } = await dayPassBatch(2);
    const [a, b] = codes as [string, string];
    await world.say(OWNER, `/sold ${a} ${b} paid 100`);
    const question = lastMenuIn(world.fake, OWNER);
    const holding = await holdLock(
      world.url!,
      (tx) => tx`select id from vouchers where code = ${b} for update`,
    );
    try {
      const confirm = () => world.press(OWNER, "Confirm", OWNER, question);
      const competitor = () => markVouchersSold(world.ctx, admin, { codes: [b] });
      const firstDone = first === "confirm" ? confirm() : competitor();
      await eventually(waitingForLocks(world.db, 1), 15_000);
      const secondDone = first === "confirm" ? competitor() : confirm();
      await eventually(waitingForLocks(world.db, 2), 15_000);
      await holding.release();
      const [confirmed, competing] =
        first === "confirm" ? [await firstDone, await secondDone] : [await secondDone, await firstDone];
      return { a, b, confirmed, competing };
    } finally {
      await holding.release();
    }
  }

  it("the other sale gets the code first: Confirm sells nothing and records no cash", async () => {
    clock.set("2026-05-04T08:00:00Z");
    const { a, b, competing } = await race("competitor");
    expect(competing).toMatchObject({ sold: 1, paymentId: null });
    expect(lastText(world.fake, OWNER)).toMatch(
      /^Nothing was sold and no cash recorded: 1 of the 2 codes the KES 100 was for was sold/,
    );
    expect(await statusesOf([a, b])).toEqual({ [a]: "available", [b]: "sold" });
    expect(await cashNaming(a)).toEqual([]);
  });

  it("Confirm gets the codes first: both sold and the cash recorded, the other sale finds none", async () => {
    clock.set("2026-05-04T09:00:00Z");
    const { a, b, competing } = await race("confirm");
    expect(competing).toMatchObject({ sold: 0, notAvailable: 1 });
    expect(lastText(world.fake, OWNER)).toBe(
      "✅ 2 vouchers sold: live on the routers now. KES 100 recorded as cash received.",
    );
    expect(await statusesOf([a, b])).toEqual({ [a]: "sold", [b]: "sold" });
    expect(await cashNaming(a)).toEqual([{ amountCents: 10_000 }]);
  });
});

describe("/sold batch past nine digits", () => {
  it("names a batch by a large number, and says no batch for one no batch can have", async () => {
    // Batches' ids are `integer`, up to 2,147,483,647.
    await world.db.execute(sql`alter table voucher_batches alter column id restart with 2000000000`);
    const { batch } = await dayPassBatch(2);
    expect(batch.id).toBeGreaterThan(999_999_999);
    await world.say(OWNER, "/sold batch 2147483648");
    expect(lastText(world.fake, OWNER)).toBe("No batch 2147483648.");
    await world.say(OWNER, `/sold batch ${batch.id}`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      new RegExp(`^Mark 2 unsold vouchers of batch ${batch.id} sold`),
    );
  });
});
