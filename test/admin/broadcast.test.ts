import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { selfSignUp } from "../../src/billing/self-signup.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { suspendSubscription } from "../../src/billing/suspend-resume.ts";
import { parseBroadcast } from "../../src/bots/admin/features/broadcast.ts";
import { FakeClock } from "../../src/clock.ts";
import { chatReplyRoutes, messageOutbox, routers } from "../../src/db/schema/index.ts";
import { translate } from "../../src/messaging/render.ts";
import { createPlan, job, admin as someAdmin } from "../support/billing.ts";
import { adminWorldForFile, auditRows, lastMenuIn, lastText, lastToast, OWNER } from "./world.ts";

const clock = new FakeClock("2026-04-01T06:00:00Z");
const SUPPORT = 6_400_002;
const world = adminWorldForFile(clock, [{ id: SUPPORT, role: "support", name: "Sam" }]);

const broadcasts = async () =>
  world.db.select().from(messageOutbox).where(eq(messageOutbox.template, "broadcast"));

describe("parseBroadcast", () => {
  it("reads the audience and the text, quoted names included", () => {
    expect(parseBroadcast('area "Kahawa West" Maintenance tonight')).toEqual({
      ok: true,
      audience: { kind: "area", name: "Kahawa West" },
      text: "Maintenance tonight",
    });
    expect(parseBroadcast("ALL  Hello\nall")).toEqual({
      ok: true,
      audience: { kind: "all" },
      text: "Hello\nall",
    });
    expect(parseBroadcast("plan home-10 New prices")).toMatchObject({
      audience: { kind: "plan", code: "home-10" },
    });
    expect(parseBroadcast("everyone hi")).toEqual({
      ok: false,
      error: '"everyone" is not an audience: router, plan, area or all.',
    });
    expect(parseBroadcast("router")).toEqual({ ok: false, error: "Say the router's name." });
  });
});

describe("/broadcast", () => {
  it("counts, asks, and the button writes one notice per customer once, routed to chat or SMS", async () => {
    const plan = await createPlan(world.db, { priceCents: 100_000, code: "home-b" });
    const other = await createPlan(world.db, { priceCents: 150_000 });
    const [r1] = await world.db
      .insert(routers)
      .values({ name: "Kibera-1", host: "10.0.0.1", username: "api", passwordEncrypted: "x" })
      .returning();
    const [r2] = await world.db
      .insert(routers)
      .values({ name: "Roysambu", host: "10.0.0.2", username: "api", passwordEncrypted: "x" })
      .returning();
    const add = (name: string, phone: string, planId: number, routerId: number) =>
      createCustomerWithSubscription(world.ctx, job, { name, phone, planId, routerId });
    await add("Amina", "+254712400001", plan.id, r1!.id);
    const b = await add("Baraka", "+254712400002", other.id, r1!.id);
    const c = await add("Chebet", "+254712400003", plan.id, r1!.id);
    await add("Daudi", "+254712400004", plan.id, r2!.id);
    await applyPayment(world.ctx, someAdmin, {
      customerId: b.customer.id,
      method: "cash",
      provider: "cash",
      providerRef: "baraka-first",
      amountCents: 150_000,
    });
    await suspendSubscription(world.ctx, someAdmin, { subscriptionId: b.subscription.id, reason: "test" });
    await cancelSubscription(world.ctx, someAdmin, { subscriptionId: c.subscription.id, reason: "left" });
    const signed = await selfSignUp(world.ctx, job, {
      phone: "+254712400005",
      name: "Esther",
      planId: plan.id,
      language: "sw",
      area: { name: "Kahawa West", routerId: null },
      channel: "ussd",
      sessionId: "s1",
    });
    expect(signed.ok).toBe(true);
    // Amina is chatting on Telegram right now: her notice goes there.
    await world.db.insert(chatReplyRoutes).values({
      phone: "+254712400001",
      channel: "telegram",
      chatId: "9001",
      until: new Date("2026-05-01T00:00:00Z"),
    });

    await world.say(SUPPORT, "/broadcast all Hello");
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/broadcast/);
    for (const [typed, answer] of [
      ["/broadcast", /Say who: router, plan, area or all/],
      ["/broadcast everyone Hello", /"everyone" is not an audience/],
      ["/broadcast router Nowhere Outage", /No router named Nowhere\./],
      ["/broadcast plan nosuch Prices", /No plan with code nosuch\./],
      ["/broadcast all", /Say what the notice says\./],
      [`/broadcast all ${"x".repeat(481)}`, /The notice is 481 characters; at most 480\./],
      ['/broadcast area "Nowhere Land" Hi', /Nobody to tell: 0 subscribers in area Nowhere Land\./],
    ] as const) {
      await world.say(OWNER, typed);
      expect(lastText(world.fake, OWNER)).toMatch(answer);
    }
    expect(await broadcasts()).toHaveLength(0);

    // Typed with an en dash and a curly quote, as phones do: sent plain, one GSM-7 part, not Unicode.
    await world.say(OWNER, "/broadcast router kibera-1 Outage tonight 22:00–02:00, we’re sorry.");
    const question = lastMenuIn(world.fake, OWNER);
    expect(String(question.payload.text)).toMatch(/^Send this notice/);
    expect(String(question.payload.text)).toContain(
      "Send this notice to 2 subscribers on router kibera-1 (by chat or SMS; 1 SMS part per copy sent by SMS)?\n\nKibera Net: Outage tonight 22:00-02:00, we're sorry.",
    );
    await Promise.all([
      world.press(OWNER, "Confirm", OWNER, question),
      world.press(OWNER, "Confirm", OWNER, question),
    ]);
    await world.press(OWNER, "Confirm", OWNER, question);
    expect(lastToast(world.fake)).toBe("Already done.");
    expect(lastText(world.fake, OWNER)).toMatch(/✅ Notice queued for 2 subscribers on router kibera-1/);
    const sent = await broadcasts();
    expect(sent.map((m) => [m.channel, m.recipient, m.fallbackRecipient]).sort()).toEqual([
      ["sms", "+254712400002", null],
      ["telegram", "9001", "+254712400001"],
    ]);
    expect(
      sent.every((m) => (m.params as { text: string }).text === "Outage tonight 22:00-02:00, we're sorry."),
    ).toBe(true);
    expect(new Set(sent.map((m) => m.dedupeKey)).size).toBe(2);
    expect(translate("sw", "sms.broadcast", { isp: "Kibera Net", text: "Outage tonight" })).toBe(
      "Kibera Net: Outage tonight",
    );
    const audited = await auditRows(world.db, "broadcast.sent", `tg:${OWNER}`);
    expect(audited.map((r) => (r.details as { recipients: number }).recipients)).toEqual([2]);

    await world.say(OWNER, `/broadcast plan ${plan.code} New prices from May`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      /^Send this notice to 3 subscribers on plan/,
    );
    await world.say(OWNER, '/broadcast area "kahawa west" Technician visits on Monday');
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      /^Send this notice to 1 subscriber in area kahawa west/,
    );
    await world.press(OWNER, "Confirm");
    const toArea = (await broadcasts()).filter((m) =>
      (m.params as { text: string }).text.startsWith("Technician"),
    );
    expect(toArea.map((m) => [m.recipient, m.language])).toEqual([["+254712400005", "sw"]]);
    await world.say(OWNER, `/broadcast all Happy holidays 🎄 ${"and a good new year ".repeat(4)}`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      /^Send this notice to all 4 subscribers \(by chat or SMS; 2 SMS parts per copy sent by SMS \(Unicode: an emoji/,
    );
    const pendingOnly = await world.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.template, "broadcast"), eq(messageOutbox.status, "pending")));
    expect(pendingOnly).toHaveLength(3);
  });
});
