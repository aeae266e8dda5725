import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { markFailed, markHandled, retryUnhandled, storeInbound } from "../../src/bots/chat-inbox.ts";
import { chatJobs, purgeChatInbox, sendStaleChatNoticesBySms } from "../../src/bots/jobs.ts";
import { DAY, FakeClock, HOUR, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatInbox, messageOutbox } from "../../src/db/schema/index.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
const clock = new FakeClock("2026-07-01T06:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

describe("chat housekeeping", () => {
  it("drops handled inbox rows after two days and keeps the rest", async () => {
    const [old, oldFailed] = await storeInbound(database.db, new Date(clock.now().getTime() - 3 * DAY), [
      { channel: "telegram", externalId: "h-old", chatId: "1", payload: {} },
      { channel: "telegram", externalId: "h-old-failed", chatId: "1", payload: {} },
    ]);
    const [recent] = await storeInbound(database.db, clock.now(), [
      { channel: "telegram", externalId: "h-recent", chatId: "1", payload: {} },
    ]);
    await database.db.update(chatInbox).set({ status: "done" }).where(eq(chatInbox.id, old!.id));
    await database.db.update(chatInbox).set({ status: "done" }).where(eq(chatInbox.id, recent!.id));
    await database.db.update(chatInbox).set({ status: "failed" }).where(eq(chatInbox.id, oldFailed!.id));

    expect(await purgeChatInbox(database.db, clock.now())).toEqual({ removed: 1 });
    const left = (await database.db.select({ id: chatInbox.externalId }).from(chatInbox))
      .map((r) => r.id)
      .sort();
    expect(left).toEqual(["h-old-failed", "h-recent"]);
    expect(chatJobs(clock).map((j) => j.name)).toEqual(["chat-inbox-purge", "chat-notices-to-sms"]);
  });

  it("sends by SMS a notice no chat worker took within the hour; a chat's own answers stay", async () => {
    const at = (ms: number) => new Date(clock.now().getTime() - ms);
    const row = (recipient: string, createdAt: Date, fallbackRecipient: string | null) => ({
      channel: "whatsapp" as const,
      recipient,
      language: "en" as const,
      template: fallbackRecipient ? "payment_received" : "chat",
      params: {},
      fallbackRecipient,
      nextAttemptAt: createdAt,
      createdAt,
    });
    await database.db
      .insert(messageOutbox)
      .values([
        row("254700000001", at(2 * HOUR), "+254700000001"),
        row("254700000002", at(10 * MINUTE), "+254700000002"),
        row("254700000003", at(2 * HOUR), null),
      ]);
    expect(await sendStaleChatNoticesBySms(database.db, clock.now())).toEqual({ moved: 1 });
    const rows = await database.db
      .select({ channel: messageOutbox.channel, recipient: messageOutbox.recipient })
      .from(messageOutbox)
      .orderBy(messageOutbox.id);
    expect(rows).toEqual([
      { channel: "sms", recipient: "+254700000001" },
      { channel: "whatsapp", recipient: "254700000002" },
      { channel: "whatsapp", recipient: "254700000003" },
    ]);
  });
});

describe("retrying what a chat sent", () => {
  it("does not apply a failed message once a later one of the same chat was handled", async () => {
    const [first, second] = await storeInbound(database.db, clock.now(), [
      { channel: "whatsapp_cloud", externalId: "s-1", chatId: "254700000777", payload: { n: 1 } },
      { channel: "whatsapp_cloud", externalId: "s-2", chatId: "254700000777", payload: { n: 2 } },
    ]);
    const [other] = await storeInbound(database.db, clock.now(), [
      { channel: "whatsapp_cloud", externalId: "s-3", chatId: "254700000888", payload: { n: 3 } },
    ]);
    await markFailed(database.db, first!.id, clock.now(), new Error("database went away"));
    await markHandled(database.db, second!.id, clock.now());
    await markFailed(database.db, other!.id, clock.now(), new Error("database went away"));

    const handled: number[] = [];
    await retryUnhandled({ db: database.db, clock }, "whatsapp_cloud", async (row) => {
      handled.push(Number(row.payload.n));
    });
    expect(handled).toEqual([3]);
    const [row] = await database.db.select().from(chatInbox).where(eq(chatInbox.id, first!.id));
    expect(row).toMatchObject({
      status: "done",
      lastError: "superseded: a later message of this chat was handled",
    });
  });
});
