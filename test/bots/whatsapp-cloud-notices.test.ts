import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { retryUnhandled, storeInbound } from "../../src/bots/chat-inbox.ts";
import { parseTemplateMap } from "../../src/bots/chat-notices.ts";
import { inboxPayload } from "../../src/bots/whatsapp-cloud/adapter.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { messagesOf } from "../../src/bots/whatsapp-cloud/inbound.ts";
import { createWhatsAppWebhook } from "../../src/bots/whatsapp-cloud/index.ts";
import { failedStatusesOf, failedStatusRecord } from "../../src/bots/whatsapp-cloud/statuses.ts";
import { FakeClock, HOUR, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatInbox, messageOutbox } from "../../src/db/schema/index.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { billingContext, createPlan, receiptNotices } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { settings, silent } from "../ussd/world.ts";
import {
  APP_SECRET,
  bodyOf,
  buttonReply,
  failedStatusReport,
  inbound,
  optionsOf,
  startWhatsApp,
  text,
  VERIFY_TOKEN,
  type WhatsAppInstance,
} from "./whatsapp-cloud-world.ts";

/**
 * Notices on the WhatsApp Cloud API against Meta's rules as the fake keeps them: the 24-hour window
 * runs from when the person wrote, and a message Meta reports failed becomes an SMS, once, however
 * late or often its messages and reports are handled.
 */

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-06-01T06:00:00Z");
let cloud: FakeWhatsApp;
let wa: WhatsAppInstance;
/** The webhook's handling of a stored row, as the inbox retry runs it. */
let handleRow: ReturnType<typeof createWhatsAppWebhook>["handleRow"];
let planId: number;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  cloud = await startFakeWhatsApp({ now: () => clock.now() });
  cloud.approveTemplate("tandao_receipt", "en", 2);
  const options = {
    templates: parseTemplateMap("payment_received=tandao_receipt:amountCents|receipt"),
    signing: { isp: "Kibera Net", till: "555111", ussdCode: "*384*123#" },
  };
  wa = startWhatsApp(ctx, cloud, options);
  handleRow = createWhatsAppWebhook({
    ctx,
    logger: silent,
    services: createMenuServices(ctx, { planCacheMs: 0 }),
    settings,
    phoneNumberId: cloud.phoneNumberId,
    appSecret: APP_SECRET,
    verifyToken: VERIFY_TOKEN,
  }).handleRow;
  planId = (await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" })).id;
});
afterAll(async () => {
  await wa?.channel.stop();
  await cloud?.close();
  await database?.close();
});

/** Paybill payments' receipts are the notices under test. */
const { customer, pay } = receiptNotices(
  () => ctx,
  () => planId,
);

const receiptsBySms = (phone: string) =>
  database.db
    .select()
    .from(messageOutbox)
    .where(
      and(
        eq(messageOutbox.channel, "sms"),
        eq(messageOutbox.recipient, phone),
        eq(messageOutbox.template, "payment_received"),
      ),
    );

/** What the webhook stored of a body it took before the process stopped: leased, never handled. */
async function storedUnhandled(body: string) {
  const [message] = messagesOf(JSON.parse(body), cloud.phoneNumberId);
  const [row] = await storeInbound(database.db, clock.now(), [
    {
      channel: "whatsapp_cloud",
      externalId: message!.id,
      chatId: message!.waId!,
      payload: inboxPayload(message!, clock.now()),
    },
  ]);
  return row!;
}

const retryInbox = () =>
  retryUnhandled({ db: database.db, clock, logger: silent }, "whatsapp_cloud", handleRow);

describe("the 24-hour window of a WhatsApp Cloud API chat", () => {
  it("counts from when the person wrote, not from when their message was handled", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    // Written at T0, delivered (and so handled) five hours later: Meta retried it.
    const late = inbound(cloud, waId, text("hi"));
    clock.advance(5 * HOUR);
    expect(await wa.post(late)).toBe(200);
    clock.advance(19 * HOUR + MINUTE);
    await pay(person.id, 20_000);
    await wa.channel.sendDue();
    // Known to be outside the window: the template at once, no free text for Meta to refuse.
    expect(cloud.sentTo(waId).at(-1)?.payload).toMatchObject({ type: "template" });
    expect(cloud.refused.filter((r) => r.to === waId)).toEqual([]);
    expect(await receiptsBySms(person.phone)).toEqual([]);
  });

  it("runs from the newest message even when an older one is delivered after it", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    const older = inbound(cloud, waId, text("hi"));
    clock.advance(4 * HOUR);
    await wa.post(inbound(cloud, waId, text("menu")));
    clock.advance(HOUR);
    // The first message, delivered late, was still written before the second.
    expect(await wa.post(older)).toBe(200);

    clock.advance(23 * HOUR - MINUTE);
    const inside = await pay(person.id, 20_000);
    await wa.channel.sendDue();
    expect(cloud.sentTo(waId).at(-1)?.payload).toMatchObject({ type: "text" });
    expect(JSON.stringify(cloud.sentTo(waId).at(-1)?.payload)).toContain(inside);
    clock.advance(2 * MINUTE);
    await pay(person.id, 20_000);
    await wa.channel.sendDue();
    expect(cloud.sentTo(waId).at(-1)?.payload).toMatchObject({ type: "template" });
    expect(cloud.refused.filter((r) => r.to === waId)).toEqual([]);
  });

  it("never takes a message's time from beyond the clock: it counts from when it came", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    const ahead = String(Math.floor((clock.now().getTime() + 3 * HOUR) / 1000));
    await wa.post(inbound(cloud, waId, { ...text("hi"), timestamp: ahead }));
    clock.advance(24 * HOUR + MINUTE);
    await pay(person.id, 20_000);
    await wa.channel.sendDue();
    expect(cloud.sentTo(waId).at(-1)?.payload).toMatchObject({ type: "template" });
    expect(cloud.refused.filter((r) => r.to === waId)).toEqual([]);
  });

  it("counts from when the person wrote a message the inbox handled hours later", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await storedUnhandled(inbound(cloud, waId, text("hi")));
    clock.advance(5 * HOUR);
    await retryInbox();
    await wa.channel.sendDue();
    expect(bodyOf(cloud.sentTo(waId).at(-1))).toBe("Kibera Net");

    clock.advance(19 * HOUR + MINUTE);
    await pay(person.id, 20_000);
    await wa.channel.sendDue();
    expect(cloud.sentTo(waId).at(-1)?.payload).toMatchObject({ type: "template" });
    expect(cloud.refused.filter((r) => r.to === waId)).toEqual([]);
  });
});

describe("the window after a message that leaves the menu where it was", () => {
  it("runs from a photo the menu cannot read, as from any message", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("hi")));
    clock.advance(20 * HOUR);
    expect(
      await wa.post(inbound(cloud, waId, { type: "image", image: { id: "7", mime_type: "image/jpeg" } })),
    ).toBe(200);
    await wa.channel.sendDue();
    expect(bodyOf(cloud.sentTo(waId).at(-1))).toBe(
      "Please type a number from the menu, or 'menu' to start again.",
    );
    clock.advance(10 * HOUR);
    const receipt = await pay(person.id, 20_000);
    await wa.channel.sendDue();
    expect(cloud.sentTo(waId).at(-1)?.payload).toMatchObject({ type: "text" });
    expect(JSON.stringify(cloud.sentTo(waId).at(-1)?.payload)).toContain(receipt);
    expect(cloud.refused.filter((r) => r.to === waId)).toEqual([]);
  });

  it("runs from a button pressed on an older screen, which changes nothing else", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("hi")));
    await wa.channel.sendDue();
    const older = cloud.sentTo(waId).at(-1);
    clock.advance(MINUTE);
    await wa.post(inbound(cloud, waId, text("menu")));
    clock.advance(MINUTE);
    await wa.post(inbound(cloud, waId, buttonReply(optionsOf(older)[0]!.id)));
    await wa.channel.sendDue();
    expect(bodyOf(cloud.sentTo(waId).at(-1))).toBe(
      "This menu is out of date. Please choose from the newest one.",
    );

    // A day after the "menu", less than a day after the button.
    clock.advance(24 * HOUR - 30_000);
    const receipt = await pay(person.id, 20_000);
    await wa.channel.sendDue();
    expect(cloud.sentTo(waId).at(-1)?.payload).toMatchObject({ type: "text" });
    expect(JSON.stringify(cloud.sentTo(waId).at(-1)?.payload)).toContain(receipt);
    expect(cloud.refused.filter((r) => r.to === waId)).toEqual([]);
  });
});

describe("a failed report handled a second time", () => {
  it("changes nothing more: the notice goes by SMS once and the report ends handled", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("hi")));
    await pay(person.id, 30_000);
    await wa.channel.sendDue();
    const accepted = cloud.sentTo(waId).at(-1)!;
    const [status] = failedStatusesOf(
      failedStatusReport(cloud, accepted.id, waId, 131026),
      cloud.phoneNumberId,
    );

    // The report as the webhook stored it, applied by a process that stopped before recording so.
    const [stored] = await storeInbound(database.db, clock.now(), [
      failedStatusRecord("whatsapp_cloud", status!),
    ]);
    await handleRow(stored!);
    expect(await receiptsBySms(person.phone)).toHaveLength(1);
    // Its lease over, the inbox's retry finds it; so may a second handler at the same time.
    clock.advance(2 * MINUTE);
    await retryInbox();
    await expect(handleRow(stored!)).resolves.toBeUndefined();

    const [report] = await database.db.select().from(chatInbox).where(eq(chatInbox.id, stored!.id));
    expect(report).toMatchObject({ status: "done", lastError: null });
    const sms = await receiptsBySms(person.phone);
    expect(sms).toMatchObject([{ status: "pending", fallbackRecipient: person.phone }]);
    expect(sms[0]?.lastError).toContain("131026");
  });
});
