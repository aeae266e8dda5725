import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createInboxStore } from "../../src/bots/chat-inbox.ts";
import { type ChatStep, createChatStepSaver } from "../../src/bots/chat-save.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatInbox, chatSessions, messageOutbox } from "../../src/db/schema/index.ts";
import { createTestDatabase } from "../support/db.ts";

/**
 * Messages handled together are saved together (turn-batcher.ts); a batch that fails is run again
 * item by item. Two steps of one chat in a batch take two statements: the batch must still change
 * all or nothing, or a step already saved would be run again alone, find the session moved on, and
 * answer "another message won" (an "out of date" answer after the real one).
 */

let database: Database;
const clock = new FakeClock("2026-09-01T06:00:00Z");
let nextChat = 8_800_000;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

const inboxRow = async (chatId: string, externalId: string) => {
  const [row] = await database.db
    .insert(chatInbox)
    .values({
      channel: "telegram",
      externalId,
      chatId,
      payload: {},
      receivedAt: clock.now(),
    })
    .returning({ id: chatInbox.id });
  return row!.id;
};

const step = (chatId: string, inboxId: number, inputs: string[], text: string): ChatStep => ({
  channel: "telegram",
  chatId,
  expectedStep: null,
  step: 1,
  sessionKey: `k${chatId}`,
  inputs,
  language: "en",
  at: clock.now(),
  messages: [{ channel: "telegram", to: chatId, language: "en", content: { kind: "text", text } }],
  inboxId,
});

describe("the step saver's fallback after a failed batch", () => {
  it("answers true for a step its batch's first statement saved, even when a later statement fails", async () => {
    const x = String(++nextChat);
    const y = String(++nextChat);
    const save = createChatStepSaver(database.db);
    const a1 = await inboxRow(x, `${x}-1`);
    const b1 = await inboxRow(y, `${y}-1`);
    const a2 = await inboxRow(x, `${x}-2`);
    // One turn: chat X twice (so two statements), chat Y once. X's second step holds half a
    // surrogate pair, which PostgreSQL's JSON refuses: the second statement fails (any failure of it
    // would do: a lost connection, a deadlock, a statement timeout).
    const results = await Promise.allSettled([
      save(step(x, a1, [], "answer to X's first")),
      save(step(y, b1, [], "answer to Y")),
      save(step(x, a2, ["2\ud800"], "answer to X's second")),
    ]);

    // What the database holds: X's first step and Y's step were saved, answers queued, inbox done.
    const sessions = await database.db
      .select({ chatId: chatSessions.chatId, step: chatSessions.step })
      .from(chatSessions)
      .where(sql`${chatSessions.chatId} in (${x}, ${y})`)
      .orderBy(chatSessions.chatId);
    expect(sessions).toEqual([
      { chatId: x, step: 1 },
      { chatId: y, step: 1 },
    ]);
    const queued = await database.db
      .select({ recipient: messageOutbox.recipient })
      .from(messageOutbox)
      .where(sql`${messageOutbox.recipient} in (${x}, ${y})`)
      .orderBy(messageOutbox.id);
    expect(queued.map((q) => q.recipient)).toEqual([x, y]);
    const marks = await database.db
      .select({ id: chatInbox.id, status: chatInbox.status })
      .from(chatInbox)
      .where(and(eq(chatInbox.channel, "telegram"), sql`${chatInbox.id} in (${a1}, ${b1})`));
    expect(marks.every((m) => m.status === "done")).toBe(true);

    expect(results[2]!.status).toBe("rejected");
    // So the callers of those two steps hear "saved", not "another message won".
    expect(results.slice(0, 2).map((r) => (r.status === "fulfilled" ? r.value.saved : r.reason))).toEqual([
      true,
      true,
    ]);
  });
});

describe("the inbox store, one update delivered twice in one turn", () => {
  it("hands the stored row to one caller only; the other sees a redelivery", async () => {
    const store = createInboxStore(database.db, clock);
    const record = {
      channel: "telegram" as const,
      externalId: "dup-1",
      chatId: "77",
      payload: { update_id: 1 },
    };
    const [first, second] = await Promise.all([store(record), store({ ...record })]);
    // One insert returns one row for both copies: only the first copy may be handled.
    expect([first, second].filter((row) => row !== undefined)).toHaveLength(1);
  });
});
