import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { and, eq } from "drizzle-orm";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { startSandboxWhatsApp } from "../../src/bots/whatsapp-cloud/sandbox.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatLinks, chatSessions, messageOutbox } from "../../src/db/schema/index.ts";
import { displayPhone } from "../../src/lib/phone.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { settings, silent } from "../ussd/world.ts";
import {
  bodyOf,
  buttonReply,
  inbound,
  listReply,
  newMessageId,
  optionIdOf,
  optionsOf,
  signatureOf,
  startWhatsApp,
  text,
  VERIFY_TOKEN,
  type WhatsAppInstance,
} from "./whatsapp-cloud-world.ts";

let database: Database;
let fake: FakeWhatsApp;
let wa: WhatsAppInstance;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-04-01T06:00:00Z");
let nextWaId = 254_799_000_000;
const newChat = () => String(++nextWaId);

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  fake = await startFakeWhatsApp();
  wa = startWhatsApp(ctx, fake);
});
afterAll(async () => {
  await wa?.channel.stop();
  await fake?.close();
  await database?.close();
});

const last = (waId: string) => fake.sentTo(waId).at(-1);
const send = (waId: string, message: Record<string, unknown>, id?: string) =>
  wa.post(inbound(fake, waId, message, id));

async function session(waId: string) {
  const [row] = await database.db
    .select()
    .from(chatSessions)
    .where(and(eq(chatSessions.channel, "whatsapp_cloud"), eq(chatSessions.chatId, waId)));
  return row;
}

const VISITOR_MENU = ["1. Buy hotspot voucher", "2. How to sign up", "3. Language", "4. Help"];

describe("WhatsApp Cloud API webhook verification", () => {
  it("echoes the challenge for the right verify token and refuses anything else with 403", async () => {
    const ask = (query: string) => wa.request(`/hooks/wa?${query}`);
    const right = await ask(`hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1158201444`);
    expect(right.status).toBe(200);
    expect(await right.text()).toBe("1158201444");
    expect(
      (await ask("hub.mode=subscribe&hub.verify_token=wrong-token-0123456789&hub.challenge=1")).status,
    ).toBe(403);
    expect((await ask(`hub.mode=unsubscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1`)).status).toBe(
      403,
    );
    expect((await ask("hub.challenge=1")).status).toBe(403);
  });
});

describe("WhatsApp self-service through the webhook and the Cloud API fake", () => {
  it("answers a signed 'hi' with the main menu as a list", async () => {
    const chat = newChat();
    expect(await send(chat, text("hi"))).toBe(200);
    const menu = last(chat);
    expect(menu?.payload).toMatchObject({
      messaging_product: "whatsapp",
      to: chat,
      type: "interactive",
      interactive: { type: "list", body: { text: "Kibera Net" }, action: { button: "Choose" } },
    });
    expect(optionsOf(menu).map((o) => o.title)).toEqual(VISITOR_MENU);
    expect(optionIdOf(menu, "1.")).toMatch(/^m:\d+:1$/);
  });

  it("stores and answers the webhook first: the reply is queued and goes out afterwards", async () => {
    const chat = newChat();
    const body = inbound(fake, chat, text("hi"));
    const response = await wa.request("/hooks/wa", {
      method: "POST",
      headers: { "content-type": "application/json", "x-hub-signature-256": signatureOf(body) },
      body,
    });
    expect(response.status).toBe(200);
    // A send needs a network round trip, which cannot finish before the answer resolved.
    expect(fake.sentTo(chat)).toEqual([]);
    await wa.channel.idle();
    // Handled and queued: it goes out only when the delivery worker sends it.
    expect(fake.sentTo(chat)).toEqual([]);
    await wa.channel.sendDue();
    expect(optionsOf(last(chat)).map((o) => o.title)).toEqual(VISITOR_MENU);
  });

  it("moves through the menu by list row, by reply button and by typed number", async () => {
    const chat = newChat();
    await send(chat, text("hi"));
    expect(await send(chat, listReply(optionIdOf(last(chat), "4. Help")))).toBe(200);
    const help = last(chat);
    expect(bodyOf(help)).toBe(
      "Help: call or WhatsApp 0700 123 456. You can buy a hotspot voucher here with M-Pesa.",
    );
    expect(help?.payload).toMatchObject({ type: "interactive", interactive: { type: "button" } });
    expect(optionsOf(help).map((o) => o.title)).toEqual(["Back"]);

    await send(chat, buttonReply(optionIdOf(help, "Back")));
    expect(optionsOf(last(chat)).map((o) => o.title)).toEqual(VISITOR_MENU);

    await send(chat, text("3"));
    const language = last(chat);
    expect(language?.payload).toMatchObject({ interactive: { type: "button" } });
    expect(optionsOf(language).map((o) => o.title)).toEqual(["1. English", "2. Kiswahili", "Back"]);
    expect((await session(chat))?.inputs).toEqual(["4", "0", "3"]);
  });

  it("handles a redelivered message once", async () => {
    const chat = newChat();
    await send(chat, text("hi"));
    const id = newMessageId();
    await send(chat, text("4"), id);
    const sent = fake.sentTo(chat).length;
    const before = await session(chat);
    expect(await send(chat, text("4"), id)).toBe(200);
    expect(fake.sentTo(chat).length).toBe(sent);
    expect(await session(chat)).toEqual(before);
  });

  it("answers an option from an older menu as out of date and changes nothing", async () => {
    const chat = newChat();
    await send(chat, text("hi"));
    const old = optionIdOf(last(chat), "4. Help");
    await send(chat, text("3"));
    const before = await session(chat);
    await send(chat, listReply(old));
    expect(last(chat)?.payload).toMatchObject({
      type: "text",
      text: { body: "This menu is out of date. Please choose from the newest one." },
    });
    expect(await session(chat)).toEqual(before);
  });

  it("links a customer's phone on first contact; 'My account' shows their account", async () => {
    const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const chat = customer.phone.slice(1);
    await send(chat, text("hi"));
    expect(
      await database.db
        .select({ channel: chatLinks.channel, customerId: chatLinks.customerId, method: chatLinks.method })
        .from(chatLinks)
        .where(eq(chatLinks.chatId, chat)),
    ).toEqual([{ channel: "whatsapp_cloud", customerId: customer.id, method: "phone" }]);
    const [linked, menu] = fake.sentTo(chat);
    expect(bodyOf(linked)).toBe(`Linked to account ${customer.accountNumber}.`);
    expect(optionsOf(menu)[0]?.title).toBe("1. My account");

    await send(chat, listReply(optionIdOf(menu, "1. My account")));
    const account = last(chat);
    expect(bodyOf(account)).toBe(
      "Plan: Fibre 1500\nStatus: Awaiting first payment\nAmount due: KES 1,500\nNo payment yet",
    );
    expect(optionsOf(account).map((o) => o.title)).toEqual(["Back"]);

    // The link is made once: the next greeting is not told again.
    await send(chat, text("menu"));
    expect(fake.sentTo(chat).filter((m) => bodyOf(m)?.startsWith("Linked to account"))).toHaveLength(1);
  });

  it("treats a number with no customer as a visitor and links nothing", async () => {
    const chat = newChat();
    await send(chat, text("hi"));
    expect(await database.db.select().from(chatLinks).where(eq(chatLinks.chatId, chat))).toEqual([]);
    expect(optionsOf(last(chat)).map((o) => o.title)).toEqual(VISITOR_MENU);
  });

  it("lets a visitor buy a voucher with M-Pesa on the number they write from, never asking for it", async () => {
    await createPlan(database.db, {
      name: "1 Hour",
      kind: "hotspot",
      priceCents: 2_000,
      periodUnit: "hours",
      timeLimitSeconds: 3600,
    });
    const phone = uniquePhone();
    const chat = phone.slice(1);
    await send(chat, text("hi"));
    await send(chat, listReply(optionIdOf(last(chat), "1. Buy hotspot voucher")));
    await send(chat, buttonReply(optionIdOf(last(chat), "1. 1 Hour")));
    const confirm = last(chat);
    expect(bodyOf(confirm)).toBe(`1 Hour: KES 20\nBuy this voucher with M-Pesa ${displayPhone(phone)}?`);
    await send(chat, buttonReply(optionIdOf(confirm, "1. Confirm")));
    expect(last(chat)?.payload).toMatchObject({
      type: "text",
      text: {
        body: "Enter your M-Pesa PIN on the prompt to pay KES 20. Your voucher code will be sent to you.",
      },
    });
    expect(await database.db.select().from(chatLinks).where(eq(chatLinks.chatId, chat))).toEqual([]);
  });

  it("shows the codes bought with the number a visitor writes from, and no one else's", async () => {
    const plan = await createPlan(database.db, {
      name: "Day Pass",
      kind: "hotspot",
      priceCents: 5_000,
      periodUnit: "days",
    });
    const phone = uniquePhone();
    const { code } = await database.db.transaction((tx) =>
      sellVoucherInTx(tx, ctx, admin, { planId: plan.id, phone, language: "en" }),
    );
    const myCodes = async (chat: string) => {
      await send(chat, text("hi"));
      await send(chat, listReply(optionIdOf(last(chat), "1. Buy hotspot voucher")));
      const mine = optionsOf(last(chat)).find((o) => o.title.endsWith(". My voucher codes"));
      await send(chat, listReply(mine!.id));
      return bodyOf(last(chat));
    };
    // Too long for list rows: the codes come as numbered text, a number typed back opens one.
    expect(await myCodes(phone.slice(1))).toBe(
      `Your voucher codes:\n\n1. ${code}: Day Pass, until 2 Apr 2026 09:00\n0. Back\n00. Home`,
    );
    await send(phone.slice(1), text("1"));
    expect(bodyOf(last(phone.slice(1)))).toMatch(
      new RegExp(`^Voucher code: ${code}\nDay Pass, valid until `),
    );

    const other = uniquePhone();
    expect(await myCodes(other.slice(1))).toBe(
      `No voucher bought with ${displayPhone(other)} in the last 31 days is still valid.`,
    );
  });
});

describe("Meta's rate limits", () => {
  it.each(["seconds", "date"] as const)(
    "a 429 holds the answer for its Retry-After (as %s), costing no attempt, then it is sent once",
    async (form) => {
      const chat = newChat();
      fake.rateLimitNext(30, 1, form);
      expect(await send(chat, text("hi"))).toBe(200);
      expect(fake.refused.filter((r) => r.to === chat).map((r) => r.code)).toEqual([130429]);
      expect(fake.sentTo(chat)).toHaveLength(0);
      const waiting = await database.db.select().from(messageOutbox).where(eq(messageOutbox.recipient, chat));
      expect(waiting).toMatchObject([{ status: "pending", attempts: 0 }]);

      clock.advance(29_000);
      await wa.channel.sendDue();
      expect(fake.sentTo(chat)).toHaveLength(0);
      clock.advance(1_000);
      await wa.channel.sendDue();
      expect(fake.sentTo(chat)).toHaveLength(1);
      expect(bodyOf(last(chat))).toBe("Kibera Net");
      await wa.channel.sendDue();
      expect(fake.sentTo(chat)).toHaveLength(1);
    },
  );
});

describe("WhatsApp webhook refusals", () => {
  it("refuses a missing or wrong signature with 401, changing nothing and sending nothing", async () => {
    const chat = newChat();
    const body = inbound(fake, chat, text("hi"));
    expect(await wa.post(body, null)).toBe(401);
    expect(await wa.post(body, signatureOf(body, "not-the-app-secret"))).toBe(401);
    expect(await wa.post(body, "sha256=abc")).toBe(401);
    expect(await wa.post(body, signatureOf(body).replace("sha256=", "sha1="))).toBe(401);
    // Signed for other bytes: the body was changed on the way.
    expect(await wa.post(body.replace("hi", "4"), signatureOf(body))).toBe(401);
    expect(await session(chat)).toBeUndefined();
    expect(fake.sentTo(chat)).toEqual([]);
  });

  it("acknowledges a malformed but signed body with 200 and changes nothing", async () => {
    const chat = newChat();
    const bodies = [
      "{not json",
      "null",
      "[]",
      JSON.stringify({ object: "whatsapp_business_account", entry: "nope" }),
      JSON.stringify({ object: "whatsapp_business_account", entry: [{ changes: [{ field: "messages" }] }] }),
      inbound(fake, chat, text("hi")).replace(`"from":"${chat}"`, '"from":{"x":1}'),
      // Delivery statuses are not messages.
      JSON.stringify({
        object: "whatsapp_business_account",
        entry: [
          { changes: [{ field: "messages", value: { statuses: [{ id: "wamid.s", status: "read" }] } }] },
        ],
      }),
      // A message to another number of the same business account is that number's to answer.
      inbound(fake, chat, text("hi")).replace(fake.phoneNumberId, "999999"),
    ];
    for (const body of bodies) expect(await wa.post(body)).toBe(200);
    expect(await session(chat)).toBeUndefined();
    expect(fake.sentTo(chat)).toEqual([]);
  });

  it("takes a message holding U+0000 (which PostgreSQL cannot store) without it, never a 5xx", async () => {
    const chat = newChat();
    expect(await wa.post(inbound(fake, chat, text("h\u0000i"), "wamid.nul\u0000x"))).toBe(200);
    expect(await session(chat)).toMatchObject({ inputs: [] });
    expect(optionsOf(last(chat)).map((o) => o.title)).toEqual(VISITOR_MENU);
  });

  it("takes a body up to Meta's 3 MB, and refuses a bigger one with 413", async () => {
    expect(await wa.post(inbound(fake, newChat(), text("x".repeat(2_500_000))))).toBe(200);
    expect(await wa.post(inbound(fake, newChat(), text("x".repeat(3_700_000))))).toBe(413);
  });

  it("answers nothing to a reaction on its menu, nor to WhatsApp's own notes", async () => {
    const chat = newChat();
    await send(chat, text("hi"));
    const sent = fake.sentTo(chat).length;
    const before = await session(chat);
    expect(await send(chat, { type: "reaction", reaction: { message_id: "wamid.menu", emoji: "👍" } })).toBe(
      200,
    );
    expect(await send(chat, { type: "reaction", reaction: { message_id: "wamid.menu", emoji: "" } })).toBe(
      200,
    );
    expect(
      await send(chat, {
        type: "system",
        system: { body: "changed their number", type: "user_changed_number" },
      }),
    ).toBe(200);
    expect(fake.sentTo(chat).length).toBe(sent);
    expect(await session(chat)).toEqual(before);
  });
});

describe("the WhatsApp sandbox", () => {
  it("signs a curl-style message as Meta would, posts it to the app, and shows the answer", async () => {
    // The app's routes exist only once the sandbox made the channel, and the sandbox needs the
    // app's address first: the outer app hands /hooks/wa to whatever routes are there by then.
    let routes: Hono | null = null;
    const app = new Hono();
    app.all(
      "/hooks/wa",
      (c) => routes?.fetch(new Request(c.req.url.replace("/hooks/wa", "/"), c.req.raw)) ?? c.text("", 503),
    );
    const server: ServerType = await new Promise((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
    });
    const port = (server.address() as AddressInfo).port;
    const sandbox = await startSandboxWhatsApp({
      ctx,
      settings,
      logger: silent,
      appUrl: `http://127.0.0.1:${port}`,
    });
    routes = sandbox.channel.routes;
    try {
      const post = (body: unknown) =>
        fetch(sandbox.fake.graphUrl.replace(/\/v[\d.]+$/, "/sandbox/messages"), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
      expect((await post({ from: "not a number", text: "hi" })).status).toBe(400);
      const chat = newChat();
      expect(await (await post({ from: chat, text: "hi" })).json()).toEqual({ delivered: 200 });
      await sandbox.channel.idle();
      await sandbox.channel.sendDue();
      const shown = (await (
        await fetch(sandbox.fake.graphUrl.replace(/\/v[\d.]+$/, `/sandbox/chats/${chat}`))
      ).json()) as Record<string, unknown>[];
      expect(JSON.stringify(shown.at(-1))).toContain("Buy hotspot voucher");
    } finally {
      await sandbox.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
