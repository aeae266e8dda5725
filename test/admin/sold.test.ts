import { and, eq, inArray } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { createVoucherBatch, markVouchersSold } from "../../src/billing/vouchers.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import { payments, provisioningOutbox, vouchers } from "../../src/db/schema/index.ts";
import { admin, createPlan } from "../support/billing.ts";
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
