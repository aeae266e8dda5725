import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deliverDueChats } from "../../src/bots/chat-delivery.ts";
import { enqueueChat } from "../../src/bots/chat-outbox.ts";
import { createTelegramSender } from "../../src/bots/telegram/sender.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox } from "../../src/db/schema/index.ts";
import { createTestDatabase } from "../support/db.ts";

/**
 * A Bot API that does not answer in time: the delivery worker gives up on the send and tries the
 * message again later. The request it gave up on must not go on (a late answer would mean the
 * message went out twice, the first copy after the chat's later messages).
 */

let database: Database;
const clock = new FakeClock("2026-08-02T06:00:00Z");
/** Requests the Bot API stand-in has been sent, each answered only when `answering` is on. */
const requests: { text: string; closedUnanswered: boolean }[] = [];
let answering = false;
const server = createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => {
    body += chunk;
  });
  req.on("end", () => {
    const entry = { text: String(JSON.parse(body).text), closedUnanswered: false };
    requests.push(entry);
    res.on("close", () => {
      if (!res.writableEnded) entry.closedUnanswered = true;
    });
    if (answering) {
      res.setHeader("content-type", "application/json");
      res.end(
        JSON.stringify({
          ok: true,
          result: {
            message_id: requests.length,
            date: 0,
            chat: { id: 901, type: "private" },
            text: entry.text,
          },
        }),
      );
    }
  });
});

beforeAll(async () => {
  database = await createTestDatabase();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await database?.close();
});

describe("a Telegram send the worker stops waiting for", () => {
  it("is cancelled, and the message is sent again once, later", async () => {
    const apiRoot = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const sender = createTelegramSender({ token: "123:abc", apiRoot });
    await enqueueChat(database.db, clock.now(), [
      {
        channel: "telegram",
        to: "901",
        language: "en",
        content: { kind: "text", text: "your code: ABC123" },
      },
    ]);
    const options = { db: database.db, clock, senders: [sender], isp: "Net", sendTimeoutMs: 200 };
    expect(await deliverDueChats(options)).toMatchObject({ sent: 0, retried: 1 });
    // The request given up on is closed without an answer: it cannot be taken as sent any more.
    await expect.poll(() => requests.map((r) => r.closedUnanswered)).toEqual([true]);

    answering = true;
    clock.advance(10_000);
    expect(await deliverDueChats(options)).toMatchObject({ sent: 1 });
    expect(requests.map((r) => r.text)).toEqual(["your code: ABC123", "your code: ABC123"]);
    const [row] = await database.db.select().from(messageOutbox).where(eq(messageOutbox.recipient, "901"));
    expect(row).toMatchObject({ status: "done", providerMessageId: "2" });
  });
});
