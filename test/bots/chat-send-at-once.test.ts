import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deliverDueChats } from "../../src/bots/chat-delivery.ts";
import { enqueueChat } from "../../src/bots/chat-outbox.ts";
import { type ChatStep, saveChatSteps } from "../../src/bots/chat-save.ts";
import type { ChatContent, ChatSender } from "../../src/bots/chat-sender.ts";
import { startChatWorker } from "../../src/bots/chat-worker.ts";
import { FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox } from "../../src/db/schema/index.ts";
import { createTestDatabase } from "../support/db.ts";
import { recordingSender } from "./recording-sender.ts";

/**
 * A menu answer is written leased to the process that saved it and handed straight to its delivery
 * worker, with no claim in between; it still never overtakes an earlier message of the same chat.
 */

let database: Database;
const clock = new FakeClock("2026-08-01T06:00:00Z");
const LEASE_MS = 60_000;
let nextChat = 931;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

const text = (body: string): ChatContent => ({ kind: "text", text: body });

/** The answer to one step of `chatId`, written leased to the caller. */
const step = (chatId: string, expectedStep: number | null, answers: string[]): ChatStep => ({
  channel: "telegram",
  chatId,
  expectedStep,
  step: (expectedStep ?? 0) + 1,
  sessionKey: `k${chatId}`,
  inputs: [],
  language: "en",
  at: clock.now(),
  messages: answers.map((body) => ({ channel: "telegram", to: chatId, language: "en", content: text(body) })),
  inboxId: null,
  leaseUntil: new Date(clock.now().getTime() + LEASE_MS),
});

/** This process's worker: it sends only what it is handed or kicked for (its poll is an hour off). */
const workerSending = (sender: ChatSender) =>
  startChatWorker({ db: database.db, clock, senders: [sender], isp: "Kibera Net", intervalMs: HOUR });

const statusesOf = async (chatId: string) =>
  (
    await database.db
      .select({ status: messageOutbox.status })
      .from(messageOutbox)
      .where(eq(messageOutbox.recipient, chatId))
      .orderBy(messageOutbox.id)
  ).map((row) => row.status);

describe("answers sent as soon as they are saved", () => {
  it("are leased to the caller (no pass takes them) and sent by `deliver`, in order, each once", async () => {
    const chat = String(nextChat++);
    const [saved] = await saveChatSteps(database.db, [step(chat, null, ["menu", "hint"])]);
    expect(saved!.saved).toBe(true);
    expect(saved!.leased.map((row) => row.content)).toEqual([text("menu"), text("hint")]);

    // Leased: a pass of any instance leaves them alone.
    const other = recordingSender();
    const pass = await deliverDueChats({
      db: database.db,
      clock,
      senders: [other.sender],
      isp: "Kibera Net",
    });
    expect(pass.sent).toBe(0);

    const { sender, got } = recordingSender();
    const worker = workerSending(sender);
    worker.deliver(saved!.leased, new Date(clock.now().getTime() + LEASE_MS));
    await worker.stop();
    expect(got).toEqual([`${chat}:menu`, `${chat}:hint`]);
    expect(await statusesOf(chat)).toEqual(["done", "done"]);
  });

  it("wait behind an earlier message of the chat that is still waiting, and go out after it", async () => {
    const chat = String(nextChat++);
    await enqueueChat(database.db, clock.now(), [
      { channel: "telegram", to: chat, language: "en", content: text("receipt") },
    ]);
    const [saved] = await saveChatSteps(database.db, [step(chat, null, ["menu"])]);
    expect(saved!.saved).toBe(true);
    expect(saved!.leased).toEqual([]);

    const { sender, got } = recordingSender();
    const counts = await deliverDueChats({ db: database.db, clock, senders: [sender], isp: "Kibera Net" });
    expect(counts.sent).toBe(2);
    expect(got).toEqual([`${chat}:receipt`, `${chat}:menu`]);
  });

  it("queued behind one still being sent, go out once it is, without waiting for the worker's poll", async () => {
    const chat = String(nextChat++);
    const { sender, got, letGo } = recordingSender({ hold: true });
    const worker = workerSending(sender);
    const [first] = await saveChatSteps(database.db, [step(chat, null, ["first answer"])]);
    worker.deliver(first!.leased, new Date(clock.now().getTime() + LEASE_MS));
    await expect.poll(() => got.length).toBe(1);

    // The person's next message is answered while the first answer is still on its way.
    const [second] = await saveChatSteps(database.db, [step(chat, 1, ["second answer"])]);
    expect(second!.saved).toBe(true);
    expect(second!.leased).toEqual([]);
    worker.kick();
    letGo();
    await expect.poll(() => got).toEqual([`${chat}:first answer`, `${chat}:second answer`]);
    await worker.stop();
    expect(await statusesOf(chat)).toEqual(["done", "done"]);
  });

  it("handed to a worker that is stopping, are put back for another instance at once", async () => {
    const chat = String(nextChat++);
    const [saved] = await saveChatSteps(database.db, [step(chat, null, ["menu"])]);
    const stopping = workerSending(recordingSender().sender);
    await stopping.stop();
    stopping.deliver(saved!.leased, new Date(clock.now().getTime() + LEASE_MS));
    await stopping.stop();

    const { sender, got } = recordingSender();
    await deliverDueChats({ db: database.db, clock, senders: [sender], isp: "Kibera Net" });
    expect(got).toEqual([`${chat}:menu`]);
  });

  it("whose lease ran out before they were sent are left to the pass that took them, and sent once", async () => {
    const chat = String(nextChat++);
    const lease = new Date(clock.now().getTime() + LEASE_MS);
    const [saved] = await saveChatSteps(database.db, [step(chat, null, ["menu"])]);
    clock.advance(LEASE_MS + 1_000);

    // Another instance's pass takes the row over and is still sending it...
    const other = recordingSender({ hold: true });
    const pass = deliverDueChats({ db: database.db, clock, senders: [other.sender], isp: "Kibera Net" });
    await expect.poll(() => other.got.length).toBe(1);
    // ...when this worker gets to it, too late: it neither sends it nor makes it due again.
    const { sender, got } = recordingSender();
    const late = workerSending(sender);
    late.deliver(saved!.leased, lease);
    await late.stop();
    const third = recordingSender();
    expect(
      (await deliverDueChats({ db: database.db, clock, senders: [third.sender], isp: "Kibera Net" })).sent,
    ).toBe(0);

    other.letGo();
    expect((await pass).sent).toBe(1);
    expect([...got, ...third.got]).toEqual([]);
    expect(await statusesOf(chat)).toEqual(["done"]);
  });
});
