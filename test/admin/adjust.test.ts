import { describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import { activeSubscriber, createPlan, ledgerSum } from "../support/billing.ts";
import { adminWorldForFile, auditRows, lastMenuIn, lastText, OWNER } from "./world.ts";

/** `/adjust`: an admin corrects a balance, asked first; the sign says which way. */

const clock = new FakeClock("2026-05-01T08:00:00Z");
const SUPPORT = 6_500_002;
const world = adminWorldForFile(clock, [{ id: SUPPORT, role: "support", name: "Sam" }]);

describe("/adjust", () => {
  it("charges and credits once confirmed, each once, audited; refuses what it cannot read", async () => {
    const plan = await createPlan(world.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(world.ctx, plan.id, "Twice Credited");
    const acct = customer.accountNumber;
    const start = await ledgerSum(world.db, customer.id);

    await world.say(SUPPORT, `/adjust ${acct} -360 credited twice`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/adjust/);
    for (const [typed, answer] of [
      ["/adjust", /Say the account number/],
      [`/adjust ${acct}`, /Say \+ to credit the customer or - to charge them/],
      [`/adjust ${acct} 360 no sign`, /Say \+ to credit the customer or - to charge them/],
      [`/adjust ${acct} -0 zero`, /more than zero/],
      [`/adjust ${acct} -abc x`, /is not an amount/],
      [`/adjust ${acct} -360`, /Say why/],
      ["/adjust NOSUCH9 -360 x", /^No account NOSUCH9\. Try \/find\.$/],
    ] as const) {
      await world.say(OWNER, typed);
      expect(lastText(world.fake, OWNER)).toMatch(answer);
    }
    expect(await ledgerSum(world.db, customer.id)).toBe(start);

    await world.say(OWNER, `/adjust ${acct} -360 paybill RZZ1 and the push were one payment`);
    const question = lastMenuIn(world.fake, OWNER);
    expect(String(question.payload.text)).toMatch(
      /^Twice Credited: balance KES 0\. Charge TD\w+ KES 360 \(reason: paybill RZZ1 and the push were one payment\)\?/,
    );
    await Promise.all([
      world.press(OWNER, "Confirm", OWNER, question),
      world.press(OWNER, "Confirm", OWNER, question),
    ]);
    // Either press may finish last: one is done, the other told so.
    const toasts = world.fake
      .callsOf("answerCallbackQuery")
      .slice(-2)
      .map((c) => c.payload.text);
    expect(toasts.filter((t) => t === "Done.")).toHaveLength(1);
    expect(toasts.filter((t) => t !== "Done.")[0]).toMatch(/^Already (done|answered)\.$/);
    expect(lastText(world.fake, OWNER)).toBe(
      `✅ Charged KES 360: ${acct}'s balance is now -KES 360 (owes KES 360).`,
    );
    expect(await ledgerSum(world.db, customer.id)).toBe(start - 36_000);

    await world.say(OWNER, `/adjust ${acct} +1,000.50 goodwill for the outage`);
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toBe(
      `✅ Credited KES 1,000.50: ${acct}'s balance is now KES 640.50.`,
    );
    expect(await ledgerSum(world.db, customer.id)).toBe(start - 36_000 + 100_050);
    const audited = await auditRows(world.db, "balance.adjusted", `tg:${OWNER}`);
    expect(audited.map((r) => [r.reason, (r.details as { amountCents: number }).amountCents])).toEqual([
      ["paybill RZZ1 and the push were one payment", -36_000],
      ["goodwill for the outage", 100_050],
    ]);
  });
});
