import { and, eq, sql } from "drizzle-orm";
import { beforeAll, describe, expect, it } from "vitest";
import { applyPayment } from "../../src/billing/payments.ts";
import { selfSignUp } from "../../src/billing/self-signup.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import type { SentCall } from "../../src/bots/telegram/fake-api.ts";
import { FakeClock } from "../../src/clock.ts";
import {
  adminDialogs,
  customers,
  messageOutbox,
  provisioningOutbox,
  routers,
  subscriptions,
} from "../../src/db/schema/index.ts";
import { createPlan, job, ledgerSum } from "../support/billing.ts";
import {
  ADMIN_GROUP,
  adminWorldForFile,
  auditRows,
  buttonsOf,
  lastMenuIn,
  lastText,
  lastToast,
  OWNER,
  pressUpdate,
  shownIn,
} from "./world.ts";

const clock = new FakeClock("2026-04-01T06:00:00Z");
const SUPPORT = 6_500_002;
const VIEWER = 6_500_004;
const world = adminWorldForFile(clock, [
  { id: SUPPORT, role: "support", name: "Sam" },
  { id: VIEWER, role: "viewer", name: "Vic" },
]);
let kibera: { id: number; name: string };

beforeAll(async () => {
  const [row] = await world.db
    .insert(routers)
    .values({ name: "Kibera-1", host: "10.0.0.1", username: "api", passwordEncrypted: "x" })
    .returning();
  kibera = row!;
  await world.db
    .insert(routers)
    .values({ name: "Roysambu", host: "10.0.0.2", username: "api", passwordEncrypted: "x" });
});

/** The newest message in `chat` whose text mentions `needle` (and has buttons). */
function messageAbout(chat: number, needle: string): SentCall {
  const found = shownIn(world.fake, chat)
    .filter(
      (c) => c.method === "sendMessage" && String(c.payload.text).includes(needle) && buttonsOf(c).length,
    )
    .at(-1);
  if (!found) throw new Error(`no message about ${needle} in ${chat}`);
  return found;
}
const subscriptionOf = async (id: number) =>
  (await world.db.select().from(subscriptions).where(eq(subscriptions.id, id)))[0]!;

describe("/signups", () => {
  it("lists pending self sign-ups; approve (choosing a router) and reject work once each", async () => {
    const plan = await createPlan(world.db, { priceCents: 100_000, name: "Home" });
    await world.say(VIEWER, "/signups");
    expect(lastText(world.fake, VIEWER)).toBe("No sign-ups waiting.");
    const signUp = (name: string, phone: string, area: { name: string; routerId: number | null }) =>
      selfSignUp(world.ctx, job, {
        phone,
        name,
        planId: plan.id,
        language: "sw",
        area,
        channel: "ussd",
        sessionId: phone,
      });
    const withRouter = await signUp("Akinyi", "+254712500001", { name: "Kibera", routerId: kibera.id });
    const noRouter = await signUp("Brian", "+254712500002", { name: "Kahawa West", routerId: null });
    if (!withRouter.ok || !noRouter.ok) throw new Error("sign-up failed");
    // Added by an admin: not a self sign-up, not listed.
    await createCustomerWithSubscription(world.ctx, job, {
      name: "Walk In",
      phone: "+254712500003",
      planId: plan.id,
    });
    const subOf = async (account: string) => {
      const [row] = await world.db
        .select({ subscription: subscriptions })
        .from(subscriptions)
        .innerJoin(customers, eq(customers.id, subscriptions.customerId))
        .where(eq(customers.accountNumber, account));
      return row!.subscription;
    };
    const a = await subOf(withRouter.accountNumber);
    const b = await subOf(noRouter.accountNumber);

    // A viewer reads the list, without buttons.
    await world.say(VIEWER, "/signups");
    const viewerSees = shownIn(world.fake, VIEWER).slice(-3);
    expect(String(viewerSees[0]!.payload.text)).toBe("2 sign-ups waiting:");
    expect(viewerSees.map((c) => buttonsOf(c).length)).toEqual([0, 0, 0]);
    expect(viewerSees.map((c) => String(c.payload.text)).join("\n")).not.toMatch(/Walk In/);

    await world.say(OWNER, "/signups", ADMIN_GROUP);
    const aMessage = messageAbout(ADMIN_GROUP, withRouter.accountNumber);
    const bMessage = messageAbout(ADMIN_GROUP, noRouter.accountNumber);
    expect(String(bMessage.payload.text)).toMatch(
      /Brian · 0712 500002\nPlan: Home; area: Kahawa West; router: none yet/,
    );
    expect(buttonsOf(aMessage).map((x) => x.text)).toEqual(["Approve", "Reject"]);
    expect(buttonsOf(bMessage).map((x) => x.text)).toEqual([
      "Approve on Kibera-1",
      "Approve on Roysambu",
      "Reject",
    ]);

    // Support may not decide: refused and audited, nothing asked.
    await world.press(SUPPORT, "Reject", ADMIN_GROUP, aMessage);
    expect(lastToast(world.fake)).toBe("Your role (support) may not do that.");
    expect((await auditRows(world.db, "admin.refused", `tg:${SUPPORT}`)).map((r) => r.entityId)).toContain(
      "add",
    );

    // Approve Brian on Roysambu: asked, then once.
    await world.press(OWNER, "Approve on Roysambu", ADMIN_GROUP, bMessage);
    const approveQ = lastMenuIn(world.fake, ADMIN_GROUP);
    expect(String(approveQ.payload.text)).toMatch(/^Brian: approve this sign-up on Roysambu\?/);
    expect((await subscriptionOf(b.id)).routerId).toBeNull();
    await Promise.all([
      world.press(OWNER, "Confirm", ADMIN_GROUP, approveQ),
      world.press(OWNER, "Confirm", ADMIN_GROUP, approveQ),
    ]);
    expect(lastText(world.fake, ADMIN_GROUP)).toMatch(`✅ Approved ${noRouter.accountNumber} on Roysambu`);
    const approved = await subscriptionOf(b.id);
    const [roysambu] = await world.db.select().from(routers).where(eq(routers.name, "Roysambu"));
    expect([approved.routerId, approved.status]).toEqual([roysambu!.id, "pending"]);
    const ensures = await world.db
      .select()
      .from(provisioningOutbox)
      .where(and(eq(provisioningOutbox.subscriptionId, b.id), eq(provisioningOutbox.routerId, roysambu!.id)));
    expect(ensures.map((r) => r.action)).toEqual(["ensure_account"]);
    expect((await auditRows(world.db, "signup.approved", `tg:${OWNER}`)).map((r) => r.entityId)).toEqual([
      String(b.id),
    ]);
    // An old button for the approved one does nothing.
    await world.press(OWNER, "Approve on Kibera-1", ADMIN_GROUP, bMessage);
    expect(lastToast(world.fake)).toBe("That sign-up is no longer waiting.");

    // Reject Akinyi: cancelled, nothing owed, told in her language.
    await world.press(OWNER, "Reject", ADMIN_GROUP, aMessage);
    await world.press(OWNER, "Confirm", ADMIN_GROUP);
    await world.press(OWNER, "Confirm", ADMIN_GROUP, lastMenuIn(world.fake, ADMIN_GROUP));
    expect(lastToast(world.fake)).toBe("Already done.");
    expect((await subscriptionOf(a.id)).status).toBe("cancelled");
    expect(await ledgerSum(world.db, a.customerId)).toBe(0);
    const told = await world.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.template, "signup_rejected"));
    expect(told.map((m) => [m.recipient, m.language])).toEqual([["+254712500001", "sw"]]);
    expect((await auditRows(world.db, "signup.rejected", `tg:${OWNER}`)).map((r) => r.entityId)).toEqual([
      String(a.id),
    ]);
    await world.say(OWNER, "/signups");
    expect(lastText(world.fake, OWNER)).toBe("No sign-ups waiting.");
  });

  it("shows those waiting longest first with the full count, and names paid sign-ups no router serves", async () => {
    const plan = await createPlan(world.db, { priceCents: 100_000, name: "Home" });
    const accounts: string[] = [];
    for (let i = 0; i < 22; i++) {
      const done = await selfSignUp(world.ctx, job, {
        phone: `+2547125${String(20_000 + i).padStart(5, "0")}`,
        name: `Waiting Person ${String.fromCharCode(65 + i)}`,
        planId: plan.id,
        language: "en",
        area: { name: "Kibera", routerId: kibera.id },
        channel: "ussd",
        sessionId: `wait-${i}`,
      });
      if (!done.ok) throw new Error("sign-up failed");
      accounts.push(done.accountNumber);
      clock.advance(60_000);
    }
    // One more, from an area without a router, pays at once: its service runs, but nothing serves it.
    const paid = await selfSignUp(world.ctx, job, {
      phone: "+254712530000",
      name: "Paid Unplaced",
      planId: plan.id,
      language: "en",
      area: { name: "Kahawa West", routerId: null },
      channel: "ussd",
      sessionId: "paid-unplaced",
    });
    if (!paid.ok) throw new Error("sign-up failed");
    const [customer] = await world.db
      .select()
      .from(customers)
      .where(eq(customers.accountNumber, paid.accountNumber));
    await applyPayment(world.ctx, job, {
      customerId: customer!.id,
      method: "cash",
      provider: "cash",
      providerRef: "paid-unplaced",
      amountCents: 100_000,
    });

    await world.say(VIEWER, "/signups");
    const texts = shownIn(world.fake, VIEWER)
      .slice(-22)
      .map((c) => String(c.payload.text));
    expect(texts[0]).toBe(
      `Paid, but on no router yet (their service is billed: put them on one with /place <account> <router>):\n  • ${paid.accountNumber} · Paid Unplaced · Kahawa West`,
    );
    expect(texts[1]).toBe("22 sign-ups waiting; the 20 waiting longest:");
    expect(texts[2]).toContain(accounts[0]!);
    expect(texts.some((t) => t.includes(accounts[21]!))).toBe(false);
  });
});

describe("/add", () => {
  const dialogRow = async (admin: number) =>
    (await world.db.select().from(adminDialogs).where(eq(adminDialogs.adminTelegramId, admin)))[0];

  it("asks one question per message, keeps the answers in the database, and adds once", async () => {
    const plan = await createPlan(world.db, { priceCents: 120_000, code: "home-12", name: "Home 12" });
    await world.say(VIEWER, "/add");
    expect(lastText(world.fake, VIEWER)).toMatch(/Your role \(viewer\) may not use \/add/);
    await world.say(OWNER, "/add", ADMIN_GROUP);
    expect(lastText(world.fake, ADMIN_GROUP)).toMatch(/use it in a private chat with me/);

    await world.say(OWNER, "/add");
    expect(lastText(world.fake, OWNER)).toMatch(/^New subscriber \(1\/5\): their full name\?/);
    await world.say(OWNER, "Wanjiku Kamau");
    expect(lastText(world.fake, OWNER)).toMatch(/^\(2\/5\) Wanjiku Kamau's phone number\?/);
    expect(await dialogRow(OWNER)).toMatchObject({ step: "phone", answers: { name: "Wanjiku Kamau" } });
    await world.say(OWNER, "12345");
    expect(lastText(world.fake, OWNER)).toMatch(/"12345" is not a phone number/);
    await world.say(OWNER, "0712 500 003");
    expect(lastText(world.fake, OWNER)).toMatch(/0712 500003 is already account TD\d+/);
    await world.say(OWNER, "0712 600 001");
    expect(lastText(world.fake, OWNER)).toMatch(
      /^\(3\/5\) Which plan\? Type its code:\n.*home-12 — Home 12, KES 1,200/s,
    );
    await world.say(OWNER, "nosuch");
    expect(lastText(world.fake, OWNER)).toMatch(/No active plan "nosuch"/);
    await world.say(OWNER, "HOME-12");
    expect(lastText(world.fake, OWNER)).toMatch(/^\(4\/5\) Which router\?.*\n {2}Kibera-1\n {2}Roysambu$/);
    await world.say(OWNER, "Mars");
    expect(lastText(world.fake, OWNER)).toMatch(/No router "Mars"/);
    await world.say(OWNER, "kibera-1");
    expect(lastText(world.fake, OWNER)).toMatch(
      /^\(5\/5\) Username on the router\? Type ok for wanjiku\.kamau/,
    );
    await world.say(OWNER, "No Spaces Allowed");
    expect(lastText(world.fake, OWNER)).toMatch(/cannot be a username/);
    await world.say(OWNER, "ok");
    const question = lastMenuIn(world.fake, OWNER);
    expect(String(question.payload.text)).toMatch(
      /^Add Wanjiku Kamau, 0712 600001, plan home-12, router Kibera-1, username wanjiku\.kamau\?/,
    );
    expect(await dialogRow(OWNER)).toBeUndefined();
    expect(await world.db.select().from(customers).where(eq(customers.phone, "+254712600001"))).toHaveLength(
      0,
    );

    await Promise.all([
      world.press(OWNER, "Confirm", OWNER, question),
      world.press(OWNER, "Confirm", OWNER, question),
    ]);
    expect(lastText(world.fake, OWNER)).toMatch(
      /^✅ Added Wanjiku Kamau: account TD\d+, KES 1,200 to pay for the first period.*being created\.$/,
    );
    const added = await world.db.select().from(customers).where(eq(customers.phone, "+254712600001"));
    expect(added).toHaveLength(1);
    const [sub] = await world.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.customerId, added[0]!.id));
    expect(sub).toMatchObject({
      planId: plan.id,
      routerId: kibera.id,
      networkUsername: "wanjiku.kamau",
      status: "pending",
    });
    const created = await auditRows(world.db, "subscription.created", `tg:${OWNER}`);
    expect(created.map((r) => r.entityId)).toEqual([String(sub!.id)]);
    const rows = await world.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, sub!.id));
    expect(rows.map((r) => [r.action, r.routerId])).toEqual([["ensure_account", kibera.id]]);

    // The next suggestion for the same name is not taken.
    await world.say(OWNER, "/add");
    await world.say(OWNER, "Wanjiku Kamau");
    await world.say(OWNER, "0712 600 002");
    await world.say(OWNER, "home-12");
    await world.say(OWNER, "none");
    expect(lastText(world.fake, OWNER)).toMatch(/Type ok for wanjiku\.kamau2/);
    await world.say(OWNER, "/cancel_dialog");
    expect(lastText(world.fake, OWNER)).toBe("Stopped: nothing was added.");
    expect(await dialogRow(OWNER)).toBeUndefined();
  });

  it("another command, or ten minutes, abandons it", async () => {
    await world.say(OWNER, "/add");
    await world.say(OWNER, "Otieno");
    await world.say(OWNER, "/plans");
    expect(lastText(world.fake, OWNER)).toMatch(/plans?:/);
    expect(await dialogRow(OWNER)).toBeUndefined();
    await world.say(OWNER, "0712 600 009");
    expect(lastText(world.fake, OWNER)).toBe("Type /help for what you may do.");

    await world.say(OWNER, "/add");
    clock.advance(11 * 60_000);
    await world.say(OWNER, "Too Late");
    expect(lastText(world.fake, OWNER)).toBe("Type /help for what you may do.");
    await world.say(OWNER, "/cancel_dialog");
    expect(lastText(world.fake, OWNER)).toBe("There is nothing to stop.");
    expect(await world.db.select().from(customers).where(eq(customers.name, "Too Late"))).toHaveLength(0);
  });
});

describe("/signups with large ids", () => {
  it("approves a sign-up and a router whose ids pass 999,999,999, and refuses a button naming no possible id", async () => {
    // A long-running install: ids past nine digits (they are `integer`, up to 2,147,483,647).
    await world.db.execute(sql`alter table subscriptions alter column id restart with 2000000000`);
    await world.db.execute(sql`alter table routers alter column id restart with 2100000000`);
    const [githurai] = await world.db
      .insert(routers)
      .values({ name: "Githurai", host: "10.0.0.3", username: "api", passwordEncrypted: "x" })
      .returning();
    const plan = await createPlan(world.db, { priceCents: 100_000, name: "Home Large" });
    // Waiting longer than the earlier tests' sign-ups, so that the first page of /signups shows it.
    const now = clock.now();
    clock.set(new Date(now.getTime() - 7 * 86_400_000));
    const done = await selfSignUp(world.ctx, job, {
      phone: "+254712590001",
      name: "Wanjiru",
      planId: plan.id,
      language: "en",
      area: { name: "Githurai 45", routerId: null },
      channel: "ussd",
      sessionId: "+254712590001",
    });
    clock.set(now);
    if (!done.ok) throw new Error("sign-up failed");
    const [sub] = await world.db
      .select({ subscription: subscriptions })
      .from(subscriptions)
      .innerJoin(customers, eq(customers.id, subscriptions.customerId))
      .where(eq(customers.accountNumber, done.accountNumber));
    const subscriptionId = sub!.subscription.id;
    expect(subscriptionId).toBeGreaterThan(999_999_999);

    await world.say(OWNER, "/signups", ADMIN_GROUP);
    const message = messageAbout(ADMIN_GROUP, done.accountNumber);
    // Telegram carries at most 64 bytes of callback data.
    for (const b of buttonsOf(message)) expect(Buffer.byteLength(b.callback_data)).toBeLessThanOrEqual(64);

    // A button no sign-up can have (past what an id holds) is refused, and nothing is asked.
    const asked = shownIn(world.fake, ADMIN_GROUP).length;
    await world.deliver(pressUpdate(world.fake, OWNER, ADMIN_GROUP, message.messageId!, "sg:r:2147483648:0"));
    expect(lastToast(world.fake)).toBe("That sign-up is no longer waiting.");
    await world.deliver(
      pressUpdate(world.fake, OWNER, ADMIN_GROUP, message.messageId!, "sg:r:99999999999:0"),
    );
    expect(lastToast(world.fake)).toBe("That button is no longer in use.");
    await world.deliver(
      pressUpdate(world.fake, OWNER, ADMIN_GROUP, message.messageId!, `sg:a:${subscriptionId}:2147483648`),
    );
    expect(lastToast(world.fake)).toBe("That router no longer exists.");
    expect(shownIn(world.fake, ADMIN_GROUP).length).toBe(asked);

    await world.press(OWNER, "Approve on Githurai", ADMIN_GROUP, message);
    const question = lastMenuIn(world.fake, ADMIN_GROUP);
    expect(String(question.payload.text)).toMatch(/^Wanjiru: approve this sign-up on Githurai\?/);
    await world.press(OWNER, "Confirm", ADMIN_GROUP, question);
    expect(lastText(world.fake, ADMIN_GROUP)).toMatch(`✅ Approved ${done.accountNumber} on Githurai`);
    expect((await subscriptionOf(subscriptionId)).routerId).toBe(githurai!.id);
  });
});
