import { Writable } from "node:stream";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { enqueueMessage } from "../../src/billing/outbox.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox } from "../../src/db/schema/index.ts";
import { createLogger } from "../../src/logger.ts";
import { type AtFake, startAtFake } from "../../src/messaging/at-fake.ts";
import { createAtSmsSender } from "../../src/messaging/sms-client.ts";
import { SmsAccountGate } from "../../src/messaging/sms-pause.ts";
import { deliverDueSms, type SmsWorkerOptions, startSmsWorker } from "../../src/messaging/sms-worker.ts";
import { waitFor } from "../network/support.ts";
import { createTestDatabase } from "../support/db.ts";

/**
 * What Africa's Talking refuses, and what the worker makes of it: a refused account (sender ID,
 * balance) pauses all sending and tells the admin once; an opted-out number fails that message only.
 */

const PAUSE = 10 * MINUTE;
let database: Database;
let fake: AtFake;
let logLines: Array<{ level: number; msg: string }>;
const clock = new FakeClock("2026-03-01T08:00:00Z");

function workerOptions(senderId?: string): SmsWorkerOptions {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) logLines.push(JSON.parse(line));
      done();
    },
  });
  return {
    db: database.db,
    clock,
    sender: createAtSmsSender({ username: "tandao", apiKey: "k", smsUrl: fake.smsUrl, senderId }),
    logger: createLogger("info", sink),
    isp: "Kibera Net",
    maxAttempts: 3,
    baseDelayMs: MINUTE,
    gate: new SmsAccountGate(PAUSE),
  };
}

const errors = () => logLines.filter((l) => l.level >= 50);

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});
beforeEach(async () => {
  await database.db.delete(messageOutbox);
  await fake?.close();
  fake = await startAtFake({ username: "tandao", apiKey: "k", senderIds: ["KIBERANET"] });
  logLines = [];
});

async function enqueue(...recipients: string[]) {
  for (const recipient of recipients) {
    await enqueueMessage(database.db, clock.now(), {
      recipient,
      language: "en",
      template: "restored",
      params: { periodEndAt: "2026-04-01T08:00:00Z" },
    });
  }
}

async function row(recipient: string) {
  const [found] = await database.db
    .select()
    .from(messageOutbox)
    .where(eq(messageOutbox.recipient, recipient));
  return found!;
}

describe("a sender ID the account does not have", () => {
  it("pauses all sending after one refusal, tells the admin once, probes with one message, resumes when fixed", async () => {
    const options = workerOptions("TANDAO");
    await enqueue("+254712000401", "+254712000402", "+254712000403");
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 1, dead: 0 });
    // One request, not one per message.
    expect(fake.requests).toBe(1);
    const refused = await row("+254712000401");
    expect(refused).toMatchObject({ status: "pending", attempts: 0 });
    expect(refused.lastError).toContain("InvalidSenderId");
    for (const recipient of ["+254712000401", "+254712000402", "+254712000403"]) {
      expect((await row(recipient)).nextAttemptAt.getTime() - clock.now().getTime()).toBe(PAUSE);
    }
    expect(errors()).toHaveLength(1);
    expect(errors()[0]!.msg).toMatch(/InvalidSenderId.*AT_SENDER_ID/);

    // Paused: nothing is asked of the gateway.
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 0 });
    expect(fake.requests).toBe(1);

    // After the pause one message probes; still refused: paused again, no second alert.
    clock.advance(PAUSE);
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 1, dead: 0 });
    expect(fake.requests).toBe(2);
    expect(errors()).toHaveLength(1);

    // The admin registers the sender ID: the probe goes out, then the rest.
    fake.senderIds!.add("TANDAO");
    clock.advance(PAUSE);
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 0 });
    expect(await deliverDueSms(options)).toEqual({ sent: 2, retried: 0, dead: 0 });
    expect(fake.inbox.map((m) => m.from)).toEqual(["TANDAO", "TANDAO", "TANDAO"]);
    // No message lost an attempt to the account's problem.
    expect(await row("+254712000401")).toMatchObject({ status: "done", attempts: 1, lastError: null });
  });
});

describe("a balance that runs out", () => {
  it("sends what the balance pays for, then holds the rest until the account is topped up", async () => {
    const options = workerOptions();
    fake.balanceKes = 0.8;
    await enqueue("+254712000411", "+254712000412", "+254712000413");
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 1, dead: 0 });
    expect(fake.requests).toBe(2);
    expect((await row("+254712000412")).lastError).toContain("InsufficientBalance (405)");
    expect(await row("+254712000413")).toMatchObject({ status: "pending", attempts: 0 });
    expect(errors()).toHaveLength(1);
    expect(errors()[0]!.msg).toMatch(/InsufficientBalance.*topped up/);

    clock.advance(PAUSE - 1);
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 0 });
    fake.balanceKes = 100;
    clock.advance(1);
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 0 });
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 0 });
    expect(fake.inbox.map((m) => m.to).sort()).toEqual(["+254712000411", "+254712000412", "+254712000413"]);
  });
});

describe("a number that opted out", () => {
  it("fails that message for good, without a retry, and sends the others", async () => {
    const options = workerOptions();
    fake.blacklist.add("+254712000421");
    await enqueue("+254712000421", "+254712000422");
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 1 });
    expect(await row("+254712000421")).toMatchObject({
      status: "dead",
      attempts: 1,
      lastError: "recipient UserInBlacklist (406)",
    });
    expect(errors()).toHaveLength(0);
    // Not paused, and never tried again.
    await enqueue("+254712000423");
    clock.advance(24 * 60 * MINUTE);
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 0 });
    expect(fake.requests).toBe(3);
  });
});

describe("the worker loop", () => {
  it("keeps its pause across passes instead of trying every message", async () => {
    const options = workerOptions("TANDAO");
    let passes = 0;
    const gate = new (class extends SmsAccountGate {
      override allowsSending(now: Date): boolean {
        passes++;
        return super.allowsSending(now);
      }
    })(PAUSE);
    await enqueue("+254712000431", "+254712000432", "+254712000433", "+254712000434");
    const worker = startSmsWorker({ ...options, gate, intervalMs: 5 });
    try {
      await waitFor(() => passes >= 10, 5_000, 5);
    } finally {
      await worker.stop();
    }
    expect(fake.requests).toBe(1);
    expect(errors()).toHaveLength(1);
    const rows = await database.db.select().from(messageOutbox);
    expect(rows.every((r) => r.status === "pending" && r.attempts === 0)).toBe(true);
  });
});
