import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deliverDueChats } from "../../src/bots/chat-delivery.ts";
import { enqueueChat } from "../../src/bots/chat-outbox.ts";
import { ChatSendError, type ChatSender } from "../../src/bots/chat-sender.ts";
import { systemClock } from "../../src/clock.ts";
import { type Database, type Db, openDatabase, queryRows } from "../../src/db/client.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";

/**
 * Two app instances (two pools on one database), each running four delivery passes at once, deliver
 * many chats' messages while sends are slow and some fail. Claim statements are slowed down after
 * their snapshot (a trigger sleeping on each claimed row) so that other passes' claims, marks and
 * back-offs commit in between: claims take no lock, so this is what keeps them honest.
 */

let first: TestDatabase;
let second: Database;

beforeAll(async () => {
  first = await createTestDatabase({ maxConnections: 6 });
  if (!first.url) return;
  second = await openDatabase({ databaseUrl: first.url, dataDir: "", maxConnections: 6 });
  await first.db.execute(
    sql.raw(`
    create function slow_claim_for_test() returns trigger language plpgsql as $$
    begin
      if new.next_attempt_at > old.next_attempt_at and new.status = 'pending' and new.channel = old.channel then
        perform pg_sleep(random() * 0.01);
      end if;
      return new;
    end $$;
    create trigger slow_claim_for_test before update on message_outbox
      for each row execute function slow_claim_for_test();`),
  );
});
afterAll(async () => {
  await second?.close();
  await first?.close();
});

describe.runIf(onRealPostgres())("chat delivery by eight passes of two instances", () => {
  it("sends each chat's messages once each, in order, never two of one chat at a time", async () => {
    const chats = Array.from({ length: 24 }, (_, i) => String(990_000 + i));
    const perChat = 5;
    for (let m = 0; m < perChat; m++)
      await enqueueChat(
        first.db,
        systemClock.now(),
        chats.map((to) => ({
          channel: "telegram" as const,
          to,
          language: "en" as const,
          content: { kind: "text" as const, text: String(m) },
        })),
      );

    const attempts = new Map<string, number[]>();
    const delivered = new Map<string, number[]>();
    const inFlight = new Set<string>();
    const overlaps: string[] = [];
    const sender: ChatSender = {
      channel: "telegram",
      async send(to, content) {
        const n = Number(content.kind === "text" ? content.text : -1);
        if (inFlight.has(to)) overlaps.push(`${to}:${n}`);
        inFlight.add(to);
        attempts.set(to, [...(attempts.get(to) ?? []), n]);
        try {
          await new Promise((r) => setTimeout(r, Math.random() * 15));
          if (Math.random() < 0.25) throw new ChatSendError("retry", "flaky");
          delivered.set(to, [...(delivered.get(to) ?? []), n]);
          return { messageId: `${to}-${n}` };
        } finally {
          inFlight.delete(to);
        }
      },
    };
    const options = (db: Db) => ({
      db,
      clock: systemClock,
      senders: [sender],
      isp: "Kibera Net",
      sendTimeoutMs: 2_000,
      baseDelayMs: 5,
      maxDelayMs: 20,
      maxAttempts: 50,
      batchSize: 7,
    });
    const deadline = Date.now() + 20_000;
    const loop = async (db: Db) => {
      while (Date.now() < deadline) {
        const [left] = await queryRows<{ n: number }>(
          db,
          sql`select count(*)::int as n from message_outbox where status = 'pending'`,
        );
        if ((left?.n ?? 0) === 0) return;
        await deliverDueChats(options(db));
      }
    };
    await Promise.all([first.db, second.db].flatMap((db) => [loop(db), loop(db), loop(db), loop(db)]));

    expect(overlaps).toEqual([]);
    for (const chat of chats) {
      expect(delivered.get(chat)).toEqual([0, 1, 2, 3, 4]);
      // Attempts never go back to an earlier message, nor skip ahead of one not yet delivered.
      const tried = attempts.get(chat)!;
      expect([...tried].sort((a, b) => a - b)).toEqual(tried);
    }
    const [left] = await queryRows<{ n: number }>(
      first.db,
      sql`select count(*)::int as n from message_outbox where status <> 'done'`,
    );
    expect(left?.n).toBe(0);
  });
});
