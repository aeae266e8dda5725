import { eq, inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deliverDueChats } from "../../src/bots/chat-delivery.ts";
import { parseTemplateMap } from "../../src/bots/chat-notices.ts";
import { enqueueChat } from "../../src/bots/chat-outbox.ts";
import { type ChatContent, ChatSendError } from "../../src/bots/chat-sender.ts";
import { sendStaleChatNoticesBySms } from "../../src/bots/jobs.ts";
import { FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatSessions, messageOutbox } from "../../src/db/schema/index.ts";
import { createTestDatabase } from "../support/db.ts";
import { recordingSender } from "./recording-sender.ts";

let database: Database;
const clock = new FakeClock("2026-08-01T06:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

const text = (body: string): ChatContent => ({ kind: "text", text: body });

describe("the chat delivery worker", () => {
  it("sends a chat's messages one at a time in the order written, each once, whatever other passes do", async () => {
    await enqueueChat(
      database.db,
      clock.now(),
      ["one", "two", "three"].map((body) => ({
        channel: "telegram" as const,
        to: "901",
        language: "en" as const,
        content: text(body),
      })),
    );
    // A send that waits until let go, as a slow Telegram would.
    const { sender, got, letGo } = recordingSender({ hold: true });
    const options = { db: database.db, clock, senders: [sender], isp: "Kibera Net" };
    const first = deliverDueChats(options);
    await expect.poll(() => got.length).toBe(1);
    // A second pass while the first message is still being sent (a busy worker, or another instance):
    // the chat's next message is not due yet, so it does not overtake.
    expect((await deliverDueChats(options)).sent).toBe(0);
    letGo();
    // The first pass took the chat's three together and sends them one after the other.
    expect((await first).sent).toBe(3);
    expect((await deliverDueChats(options)).sent).toBe(0);
    expect(got).toEqual(["901:one", "901:two", "901:three"]);
    const rows = await database.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.recipient, "901"))
      .orderBy(messageOutbox.id);
    expect(rows.map((r) => [r.status, r.attempts])).toEqual([
      ["done", 1],
      ["done", 1],
      ["done", 1],
    ]);
  });

  it("stops a pass whose lease would run out before a send: the rest goes back, sent once later", async () => {
    await enqueueChat(
      database.db,
      clock.now(),
      ["911", "912", "913"].map((to) => ({
        channel: "telegram" as const,
        to,
        language: "en" as const,
        content: text(`to ${to}`),
      })),
    );
    // One chat at a time, each send taking 25 s of the 60 s lease (4 × the 15 s send timeout): the
    // third would outlive it.
    const { sender, got } = recordingSender({ clock, slowMs: 25_000 });
    const counts = await deliverDueChats({
      db: database.db,
      clock,
      senders: [sender],
      isp: "Kibera Net",
      concurrency: 1,
    });
    expect(counts.sent).toBe(2);
    expect(got).toEqual(["911:to 911", "912:to 912"]);
    const rows = await database.db
      .select()
      .from(messageOutbox)
      .where(inArray(messageOutbox.recipient, ["911", "912", "913"]))
      .orderBy(messageOutbox.id);
    expect(rows.map((r) => r.status)).toEqual(["done", "done", "pending"]);

    // The next pass sends the third, and nothing twice.
    const fast = recordingSender();
    await deliverDueChats({ db: database.db, clock, senders: [fast.sender], isp: "Kibera Net" });
    expect(fast.got).toEqual(["913:to 913"]);
  });

  it("sends a notice's template, after a slow window refusal, only while the lease lasts: once in all", async () => {
    // A WhatsApp Cloud chat that wrote an hour ago by our clock; Meta's window is closed all the same.
    const waId = "254700000977";
    await database.db.insert(chatSessions).values({
      channel: "whatsapp_cloud",
      chatId: waId,
      sessionKey: "k977",
      lastActivityAt: new Date(clock.now().getTime() - HOUR),
      lastInboundAt: new Date(clock.now().getTime() - HOUR),
    });
    await database.db.insert(messageOutbox).values({
      channel: "whatsapp_cloud",
      recipient: waId,
      language: "en",
      template: "payment_received",
      params: { amountCents: 50_000, receipt: "QWINDOW1", account: "TD00977", balanceCents: 0 },
      fallbackRecipient: "+254700000977",
      nextAttemptAt: clock.now(),
      createdAt: clock.now(),
    });
    const templates: string[] = [];
    let refusals = 0;
    let otherPasses = 0;
    const options = {
      db: database.db,
      clock,
      isp: "Kibera Net",
      windows: { whatsapp_cloud: 24 * HOUR },
      templates: { whatsapp_cloud: parseTemplateMap("payment_received=tandao_receipt:amountCents|receipt") },
      senders: [
        {
          channel: "whatsapp_cloud" as const,
          async send(to: string, content: ChatContent) {
            if (content.kind === "text") {
              // The first refusal takes 50 s of the pass's 60 s lease.
              if (++refusals === 1) clock.advance(50_000);
              throw new ChatSendError("window", "131047 outside the 24-hour window");
            }
            templates.push(to);
            // A template sent right after that refusal is still in flight when the lease ends:
            // another pass (another instance) finds the row free and delivers it.
            if (refusals === 1) {
              clock.advance(15_000);
              otherPasses++;
              await deliverDueChats(options);
            }
            return { messageId: `wamid.${templates.length}` };
          },
        },
      ],
    };
    await deliverDueChats(options);
    clock.advance(60_000);
    await deliverDueChats(options);
    expect(templates).toEqual([waId]);
    expect(otherPasses).toBe(0);
    const [row] = await database.db.select().from(messageOutbox).where(eq(messageOutbox.recipient, waId));
    expect(row).toMatchObject({ status: "done", providerMessageId: "wamid.1" });
  });

  it("leaves a notice alone while a chat worker holds it; one waiting for an hour goes by SMS", async () => {
    const created = new Date(clock.now().getTime() - 2 * HOUR);
    const [held, waiting] = await database.db
      .insert(messageOutbox)
      .values([
        {
          channel: "whatsapp",
          recipient: "254700000901",
          language: "en",
          template: "payment_received",
          fallbackRecipient: "+254700000901",
          // Leased by a worker sending it now.
          nextAttemptAt: new Date(clock.now().getTime() + 30_000),
          createdAt: created,
        },
        {
          channel: "whatsapp",
          recipient: "254700000902",
          language: "en",
          template: "payment_received",
          fallbackRecipient: "+254700000902",
          nextAttemptAt: created,
          createdAt: created,
        },
      ])
      .returning({ id: messageOutbox.id });
    expect(await sendStaleChatNoticesBySms(database.db, clock.now())).toEqual({ moved: 1 });
    const rows = await database.db
      .select({ id: messageOutbox.id, channel: messageOutbox.channel })
      .from(messageOutbox)
      .where(inArray(messageOutbox.id, [held!.id, waiting!.id]))
      .orderBy(messageOutbox.id);
    expect(rows.map((r) => r.channel)).toEqual(["whatsapp", "sms"]);
  });

  it("keeps messages while their channel cannot send, without using attempts: answers for an hour, notices 10 minutes, then SMS", async () => {
    const at = clock.now();
    const [answer, notice, oldAnswer] = await database.db
      .insert(messageOutbox)
      .values([
        {
          channel: "whatsapp",
          recipient: "254700000931",
          language: "en",
          template: "chat",
          content: { kind: "text", text: "Your balance is KES 0." },
          nextAttemptAt: at,
          createdAt: at,
        },
        {
          channel: "whatsapp",
          recipient: "254700000932",
          language: "en",
          template: "payment_received",
          params: { amountCents: 50_000, receipt: "QDOWN0001", account: "TD00932", balanceCents: 0 },
          fallbackRecipient: "+254700000932",
          nextAttemptAt: at,
          createdAt: at,
        },
        {
          channel: "whatsapp",
          recipient: "254700000933",
          language: "en",
          template: "chat",
          content: { kind: "text", text: "Choose a plan." },
          nextAttemptAt: at,
          createdAt: new Date(at.getTime() - 50 * 60_000),
        },
      ])
      .returning({ id: messageOutbox.id });
    let connected = false;
    const sent: string[] = [];
    const options = {
      db: database.db,
      clock,
      isp: "Kibera Net",
      senders: [
        {
          channel: "whatsapp" as const,
          async send(to: string) {
            if (!connected) throw new ChatSendError("unavailable", "WhatsApp Web is not connected");
            sent.push(to);
            return { messageId: `w${sent.length}` };
          },
        },
      ],
    };
    const rowOf = async (id: number) =>
      (await database.db.select().from(messageOutbox).where(eq(messageOutbox.id, id)))[0]!;
    // Eleven minutes of passes, 30 s apart: far more than the six attempts a failure may use.
    for (let pass = 0; pass < 22; pass++) {
      await deliverDueChats(options);
      clock.advance(30_000);
    }
    expect(await rowOf(answer!.id)).toMatchObject({ status: "pending", attempts: 0, channel: "whatsapp" });
    // The notice went by SMS once it had waited ten minutes: a receipt matters more than its channel.
    expect(await rowOf(notice!.id)).toMatchObject({
      status: "pending",
      channel: "sms",
      recipient: "+254700000932",
    });
    // An answer written 50 minutes before the outage is given up once an hour old.
    expect(await rowOf(oldAnswer!.id)).toMatchObject({ status: "dead" });

    connected = true;
    await deliverDueChats(options);
    expect(sent).toEqual(["254700000931"]);
    expect(await rowOf(answer!.id)).toMatchObject({ status: "done", attempts: 1 });
  });

  it("ends a wait the platform asked for (a rate limit) as it ends a channel's outage", async () => {
    const at = clock.now();
    const [fresh, old] = await database.db
      .insert(messageOutbox)
      .values(
        [at, new Date(at.getTime() - 61 * 60_000)].map((createdAt, i) => ({
          channel: "whatsapp_cloud" as const,
          recipient: `25470000094${i}`,
          language: "en" as const,
          template: "chat",
          content: { kind: "text", text: "Choose a plan." },
          nextAttemptAt: at,
          createdAt,
        })),
      )
      .returning({ id: messageOutbox.id });
    await deliverDueChats({
      db: database.db,
      clock,
      isp: "Kibera Net",
      senders: [
        {
          channel: "whatsapp_cloud" as const,
          async send() {
            throw new ChatSendError("retry", "(#131048) Spam rate limit hit", 60);
          },
        },
      ],
    });
    const rowOf = async (id: number) =>
      (await database.db.select().from(messageOutbox).where(eq(messageOutbox.id, id)))[0]!;
    expect(await rowOf(fresh!.id)).toMatchObject({ status: "pending", attempts: 0 });
    // An answer an hour old is no use to anyone any more: given up, not kept for hours.
    expect(await rowOf(old!.id)).toMatchObject({ status: "dead" });
  });
});
