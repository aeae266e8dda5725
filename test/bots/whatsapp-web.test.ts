import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { and, eq, inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { ChatSendError } from "../../src/bots/chat-sender.ts";
import { waText } from "../../src/bots/whatsapp-cloud/texts.ts";
import { FakeWhatsAppWebClient, fakeMessage } from "../../src/bots/whatsapp-web/fake-client.ts";
import { createRealClient } from "../../src/bots/whatsapp-web/real-client.ts";
import { createWhatsAppWebSender } from "../../src/bots/whatsapp-web/sender.ts";
import { printQrToTerminal } from "../../src/bots/whatsapp-web/session.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatInbox, chatLinks, chatSessions, customers } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { flush, startWorld, type World } from "./whatsapp-web-world.ts";

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-04-01T06:00:00Z");
const worlds: World[] = [];
let nextNumber = 254_798_000_000;
const newNumber = () => String(++nextNumber);

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
});
afterAll(async () => {
  for (const world of worlds) await world.wa.stop();
  await database?.close();
});

async function world(extra: Parameters<typeof startWorld>[2] = {}): Promise<World> {
  const started = startWorld(ctx, clock, extra);
  worlds.push(started);
  await flush();
  return started;
}

/** A world whose client has logged in. */
async function readyWorld(): Promise<World> {
  const w = await world();
  w.client().login();
  return w;
}

async function session(digits: string) {
  const [row] = await database.db
    .select()
    .from(chatSessions)
    .where(and(eq(chatSessions.channel, "whatsapp"), eq(chatSessions.chatId, digits)));
  return row;
}

const VISITOR_MENU = "Kibera Net\n\n1. Buy hotspot voucher\n2. How to sign up\n3. Language\n4. Help";

describe("WhatsApp Web login", () => {
  it("prints the QR in the terminal, hands it to onQr, and is ready after the scan", async () => {
    const w = await world();
    expect(w.wa.status()).toBe("starting");
    expect(w.client().initializeCalls).toBe(1);
    w.client().showQr("2@first");
    w.client().showQr("2@second");
    expect(w.wa.status()).toBe("qr");
    expect(w.printed).toEqual(["2@first", "2@second"]);
    expect(w.qrs).toEqual(["2@first", "2@second"]);
    w.client().login();
    expect(w.wa.status()).toBe("ready");
  });

  it("draws a small QR with qrcode-terminal", () => {
    const write = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    try {
      printQrToTerminal("2@hello");
      const art = String(write.mock.calls[0]?.[0]);
      expect(art).toMatch(/[▀▄█]/);
      expect(art.split("\n").length).toBeGreaterThan(10);
    } finally {
      write.mockRestore();
    }
  });

  it("asks for a pairing code once instead of showing QRs, and passes on refreshed codes", async () => {
    const w = await world({ pairingPhone: "+254 700 000 001" });
    w.client().showQr();
    w.client().showQr();
    await flush();
    expect(w.client().pairingRequests).toEqual(["254700000001"]);
    expect(w.codes).toEqual(["ABCD1234"]);
    expect(w.printed).toEqual([]);
    expect(w.qrs).toEqual([]);
    w.client().emit("code", "WXYZ9876");
    expect(w.codes).toEqual(["ABCD1234", "WXYZ9876"]);
    w.client().login();
    expect(w.wa.status()).toBe("ready");
  });

  it("reconnects after a disconnect with a growing pause, reset once ready again", async () => {
    const w = await readyWorld();
    const first = w.client();
    first.disconnect("CONFLICT");
    expect(w.wa.status()).toBe("reconnecting");
    expect(first.destroyed).toBe(true);
    // Two failed starts (a browser that will not launch) lengthen the pause each time.
    w.world.failNextStarts = 2;
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) {
      delays.push(w.timers.fire());
      await flush();
    }
    expect(delays).toEqual([5_000, 10_000, 20_000]);
    expect(w.clients).toHaveLength(4);
    expect(w.clients.map((c) => c.initializeCalls)).toEqual([1, 1, 1, 1]);
    expect(w.wa.status()).toBe("reconnecting");
    // The old client's late events count for nothing.
    first.login();
    expect(w.wa.status()).toBe("reconnecting");
    w.client().login();
    expect(w.wa.status()).toBe("ready");
    w.client().disconnect();
    expect(w.timers.pending.map((t) => t.ms)).toEqual([5_000]);

    await w.wa.stop();
    expect(w.wa.status()).toBe("stopped");
    expect(w.timers.pending).toEqual([]);
  });

  it("loads whatsapp-web.js only when started; a missing Chromium is a failed start, retried", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "tandao-wa-"));
    try {
      const client = await createRealClient({ dataDir, chromiumPath: join(dataDir, "no-chromium") });
      await expect(client.initialize()).rejects.toThrow();
      await client.destroy().catch(() => {});
      const w = await world({
        clientFactory: undefined,
        dataDir,
        chromiumPath: join(dataDir, "no-chromium"),
      });
      await vi.waitFor(() => expect(w.wa.status()).toBe("reconnecting"));
      expect(w.timers.pending.map((t) => t.ms)).toEqual([5_000]);
      await w.wa.stop();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it("stop() closes the browser", async () => {
    const w = await readyWorld();
    await w.wa.stop();
    expect(w.client().destroyed).toBe(true);
    expect(w.wa.status()).toBe("stopped");
  });
});

describe("WhatsApp Web self-service", () => {
  it("links a customer's phone on the first message and answers with the numbered main menu", async () => {
    const w = await readyWorld();
    const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const digits = customer.phone.slice(1);
    await w.receive(fakeMessage({ from: `${digits}@c.us`, body: "hi" }));
    expect(
      await database.db
        .select({ channel: chatLinks.channel, customerId: chatLinks.customerId })
        .from(chatLinks)
        .where(eq(chatLinks.chatId, digits)),
    ).toEqual([{ channel: "whatsapp", customerId: customer.id }]);
    expect((await w.outbox(digits)).map((row) => (row.content as { kind: string }).kind)).toEqual([
      "text",
      "view",
    ]);
    const [linked, menu] = await w.deliver(digits);
    expect(linked).toBe(`Linked to account ${customer.accountNumber}.`);
    expect(menu).toMatch(/^Kibera Net\n\n1\. My account\n2\. /);

    await w.receive(fakeMessage({ from: `${digits}@c.us`, body: "1" }));
    expect(await w.deliver(digits)).toEqual([
      "Plan: Fibre 1500\nStatus: Awaiting first payment\nAmount due: KES 1,500\nNo payment yet\n\n0. Back",
    ]);
    // The link is made once: the next greeting is not told again.
    await w.receive(fakeMessage({ from: `${digits}@c.us`, body: "menu" }));
    expect(await w.deliver(digits)).toEqual([menu]);
  });

  it("gives a stranger behind a hidden @lid id the visitor menu, addressed by their number", async () => {
    const w = await readyWorld();
    const digits = newNumber();
    await w.receive(fakeMessage({ from: "118000111222333@lid", number: digits, body: "hi" }));
    expect(await w.deliver(digits)).toEqual([VISITOR_MENU]);
    expect(w.client().sentTo(digits)).toHaveLength(1);
    expect(await database.db.select().from(chatLinks).where(eq(chatLinks.chatId, digits))).toEqual([]);
  });

  it("asks again for a hidden sender's number while WhatsApp Web's page cannot answer", async () => {
    const w = await readyWorld();
    const digits = newNumber();
    const waitsBefore = w.waits.length;
    await w.receive(
      fakeMessage({ from: "118000111222444@lid", number: digits, body: "hi", lookupFailures: 2 }),
    );
    expect(await w.deliver(digits)).toEqual([VISITOR_MENU]);
    expect(w.waits.slice(waitsBefore)).toEqual([500, 2_000]);
  });

  it("handles a message id once", async () => {
    const w = await readyWorld();
    const digits = newNumber();
    await w.receive(fakeMessage({ from: `${digits}@c.us`, body: "hi" }));
    const message = fakeMessage({ from: `${digits}@c.us`, body: "4" });
    await w.receive(message);
    const rows = (await w.outbox(digits)).length;
    const before = await session(digits);
    await w.receive(message);
    expect((await w.outbox(digits)).length).toBe(rows);
    expect(await session(digits)).toEqual(before);
    expect(before?.inputs).toEqual(["4"]);
  });

  it("ignores groups, status updates, its own messages and system notices; hints on media", async () => {
    const w = await readyWorld();
    const digits = newNumber();
    const ignored = [
      fakeMessage({ from: "120363012345678901@g.us", body: "hi" }),
      fakeMessage({ from: "status@broadcast", body: "hi", isStatus: true }),
      fakeMessage({ from: `${digits}@c.us`, body: "hi", fromMe: true }),
      fakeMessage({ from: `${digits}@c.us`, type: "e2e_notification" }),
    ];
    for (const message of ignored) await w.receive(message);
    expect(await w.outbox(digits)).toEqual([]);
    const stored = await database.db
      .select({ id: chatInbox.externalId })
      .from(chatInbox)
      .where(
        inArray(
          chatInbox.externalId,
          ignored.map((m) => m.id),
        ),
      );
    expect(stored).toEqual([]);

    await w.receive(fakeMessage({ from: `${digits}@c.us`, type: "image" }));
    expect(await w.deliver(digits)).toEqual([
      "Please type a number from the menu, or 'menu' to start again.",
    ]);
    expect(await session(digits)).toBeUndefined();
  });

  it("hints on media in the customer's language", async () => {
    const w = await readyWorld();
    const digits = newNumber();
    await database.db.insert(customers).values({
      accountNumber: `TDS${digits.slice(-6)}`,
      phone: `+${digits}`,
      name: "Wanjiru",
      language: "sw",
    });
    await w.receive(fakeMessage({ from: `${digits}@c.us`, type: "ptt" }));
    expect(await w.deliver(digits)).toEqual([waText("sw", "unsupported")]);
    expect(waText("sw", "unsupported")).not.toBe(waText("en", "unsupported"));
  });

  it("logs a failure in handling a message, keeps it for a retry, and goes on with the next", async () => {
    const lines: string[] = [];
    const { createLogger } = await import("../../src/logger.ts");
    const w = await world({
      logger: createLogger("error", { write: (line: string) => void lines.push(line) }),
      chatMenu: { handle: () => Promise.reject(new Error("database gone")) },
    });
    w.client().login();
    const first = newNumber();
    const second = newNumber();
    await w.receive(fakeMessage({ from: `${first}@c.us`, body: "hi" }));
    await w.receive(fakeMessage({ from: `${second}@c.us`, body: "hi" }));
    expect(lines.filter((l) => l.includes("chat message not handled; it will be retried"))).toHaveLength(2);
    expect(w.wa.status()).toBe("ready");
    const kept = await database.db
      .select({ chatId: chatInbox.chatId, status: chatInbox.status })
      .from(chatInbox)
      .where(inArray(chatInbox.chatId, [first, second]));
    expect(kept).toEqual([
      { chatId: first, status: "failed" },
      { chatId: second, status: "failed" },
    ]);
  });
});

describe("WhatsApp Web sender", () => {
  function sender(pacing = {}, onWait?: () => void) {
    const client = new FakeWhatsAppWebClient();
    const link = { ready: true, readyClient: () => (link.ready ? client : null) };
    const senderClock = new FakeClock("2026-04-01T06:00:00Z");
    const sentAt: number[] = [];
    const waits: number[] = [];
    const send = createWhatsAppWebSender(link, {
      clock: senderClock,
      pacing,
      sleep: async (ms) => {
        waits.push(ms);
        senderClock.advance(ms);
        onWait?.();
      },
    });
    const start = senderClock.now().getTime();
    return {
      client,
      link,
      waits,
      sentAt,
      clock: senderClock,
      async text(to: string, text = "hello") {
        await send.send(to, { kind: "text", text });
        sentAt.push(senderClock.now().getTime() - start);
      },
      send: send.send,
    };
  }
  const failureOf = (promise: Promise<unknown>) =>
    promise.then(
      () => null,
      (error: unknown) => (error instanceof ChatSendError ? error.failure : `not a ChatSendError: ${error}`),
    );

  it("keeps messages to one chat apart and caps the total per minute", async () => {
    const s = sender({ perChatMs: 1_000, perMinute: 3, maxWaitMs: 120_000 });
    await s.text("254700000001");
    await s.text("254700000001");
    await s.text("254700000002");
    // A fourth message within the minute waits until the first is a minute old.
    await s.text("254700000003");
    s.clock.advance(500);
    await s.text("254700000003");
    expect(s.sentAt).toEqual([0, 1_000, 1_000, 60_000, 61_000]);
    expect(s.waits).toEqual([1_000, 59_000, 500]);
    expect(s.client.sent.map((m) => m.chatId)).toEqual([
      "254700000001@c.us",
      "254700000001@c.us",
      "254700000002@c.us",
      "254700000003@c.us",
      "254700000003@c.us",
    ]);
  });

  it("gives a message back (retry) rather than wait past maxWaitMs", async () => {
    const s = sender({ perChatMs: 1_000, perMinute: 2, maxWaitMs: 10_000 });
    await s.text("254700000001");
    await s.text("254700000002");
    const refused = await s.send("254700000003", { kind: "text", text: "x" }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ChatSendError);
    expect(refused).toMatchObject({ failure: "retry", retryAfterSeconds: 60 });
    expect(s.client.sent).toHaveLength(2);
  });

  it("does not send a message the worker stopped waiting for while it waited its pacing turn", async () => {
    // The delivery worker's send timeout fires during the wait: it will try the message again.
    const worker = new AbortController();
    const s = sender({ perChatMs: 1_000, perMinute: 10, maxWaitMs: 10_000 }, () => worker.abort());
    await s.text("254700000001", "first");
    const late = s.send("254700000001", { kind: "text", text: "second" }, worker.signal);
    expect(await failureOf(late)).toBe("retry");
    expect(s.waits).toEqual([1_000]);
    expect(s.client.sent.map((m) => m.text)).toEqual(["first"]);
  });

  it("maps failures: not on WhatsApp, not connected, a lost browser, a template or raw call", async () => {
    const s = sender();
    s.client.refuse("254700000009");
    expect(await failureOf(s.send("254700000009", { kind: "text", text: "x" }))).toBe("recipient");
    expect(await failureOf(s.send("not-a-number", { kind: "text", text: "x" }))).toBe("recipient");
    expect(
      await failureOf(
        s.send("254700000001", { kind: "template", name: "reminder", language: "en", params: [] }),
      ),
    ).toBe("refused");
    const raw = { kind: "raw", method: "sendContactRequest", payload: {} } as const;
    expect(await failureOf(s.send("254700000001", raw))).toBe("refused");
    s.client.failNextSends(1);
    expect(await failureOf(s.send("254700000001", { kind: "text", text: "x" }))).toBe("retry");
    s.client.failNextSends(1, () => new Error("Error: No LID for user"));
    expect(await failureOf(s.send("254700000001", { kind: "text", text: "x" }))).toBe("recipient");
    // Not the message's fault: it waits without using up its attempts (chat-delivery.ts).
    s.link.ready = false;
    expect(await failureOf(s.send("254700000001", { kind: "text", text: "x" }))).toBe("unavailable");
    expect(s.client.sent).toEqual([]);
  });

  it("renders a view as numbered text, without options once the conversation ended", async () => {
    const s = sender();
    const view = {
      lines: ["Help: call 0700 123 456."],
      options: [
        { key: "1", label: "English" },
        { key: "0", label: "Back" },
        { key: "00", label: "Main menu" },
      ],
      end: false,
      step: 3,
      screen: "help",
      language: "en" as const,
    };
    await s.send("254700000001", { kind: "view", view });
    await s.send("254700000001", { kind: "view", view: { ...view, end: true } });
    expect(s.client.sent.map((m) => m.text)).toEqual([
      "Help: call 0700 123 456.\n\n1. English\n0. Back\n00. Main menu",
      "Help: call 0700 123 456.",
    ]);
  });
});
