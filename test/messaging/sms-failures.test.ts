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
import { SmsSendingGate } from "../../src/messaging/sms-pause.ts";
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
    gate: new SmsSendingGate(PAUSE),
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

describe("ADMIN_PHONE", () => {
  const ADMIN = "+254700000009";
  const alerts = () =>
    database.db.select().from(messageOutbox).where(eq(messageOutbox.template, "admin_alert"));

  it("is told by SMS when a message is given up, once an hour; an alert given up tells nobody", async () => {
    const options = { ...workerOptions(), adminPhone: ADMIN };
    fake.blacklist.add("+254712000471");
    fake.blacklist.add("+254712000472");
    await enqueue("+254712000471", "+254712000472");
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 2 });
    const told = await alerts();
    expect(told).toHaveLength(1);
    expect(told[0]).toMatchObject({ recipient: ADMIN, status: "pending" });
    expect(String(told[0]!.params.text)).toBe(
      "an SMS (restored to +254712000471) was given up after 1 tries: recipient UserInBlacklist (406). /failed lists messages given up.",
    );

    // The admin's own number refuses SMS too: its alert is given up, and nothing more is queued.
    fake.blacklist.add(ADMIN);
    clock.advance(60 * MINUTE);
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 1 });
    expect((await alerts()).map((a) => a.status)).toEqual(["dead"]);
  });
});

describe("a number Africa's Talking says is invalid", () => {
  it("fails that message for good, without a retry, and sends the others", async () => {
    const options = workerOptions();
    fake.failNext(1, "invalid");
    await enqueue("+254712000426", "+254712000427");
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 1 });
    expect(await row("+254712000426")).toMatchObject({
      status: "dead",
      attempts: 1,
      lastError: "recipient InvalidPhoneNumber (403)",
    });
  });
});

describe("a gateway down for hours", () => {
  const outageOptions = () => ({ ...workerOptions(), gate: new SmsSendingGate(PAUSE, 30_000, 10 * MINUTE) });
  const rows = () => database.db.select().from(messageOutbox);

  it("pauses, probes with one message at a time, gives nothing up, tells the admin once, and sends all once back", async () => {
    const options = outageOptions();
    await enqueue("+254712000441", "+254712000442", "+254712000443");
    fake.down = true;
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 1, dead: 0 });
    // One request, not one per message; the others wait without using an attempt.
    expect(fake.requests).toBe(1);
    expect(await row("+254712000442")).toMatchObject({ status: "pending", attempts: 0 });
    expect((await row("+254712000441")).lastError).toContain("HTTP 503");

    // Three hours of passes, a minute apart.
    for (let minute = 0; minute < 180; minute++) {
      clock.advance(MINUTE);
      await deliverDueSms(options);
    }
    const during = await rows();
    expect(during.map((r) => r.status)).toEqual(["pending", "pending", "pending"]);
    // More attempts than SMS_MAX_ATTEMPTS (3 here) for some: attempts alone would have given up.
    expect(Math.max(...during.map((r) => r.attempts))).toBeGreaterThan(3);
    // One probe a pause (doubling from 30 s to 10 minutes), not a try of every message every pass.
    expect(fake.requests).toBeLessThanOrEqual(26);
    expect(errors()).toHaveLength(1);
    expect(errors()[0]!.msg).toMatch(/failed every SMS for 1\d minutes \(HTTP 503/);

    fake.down = false;
    clock.advance(PAUSE);
    for (let pass = 0; pass < 5 && fake.inbox.length < 3; pass++) await deliverDueSms(options);
    expect(fake.inbox.map((m) => m.to).sort()).toEqual(["+254712000441", "+254712000442", "+254712000443"]);
    expect((await rows()).every((r) => r.status === "done")).toBe(true);
    expect(errors()).toHaveLength(1);
    expect(logLines.some((l) => l.msg.includes("answers again"))).toBe(true);
  });

  it("takes AT's own failure told per recipient (501 GatewayError) for an outage too", async () => {
    const options = outageOptions();
    await enqueue("+254712000481", "+254712000482");
    fake.failNext(1, "gatewayError");
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 1, dead: 0 });
    expect(fake.requests).toBe(1);
    expect((await row("+254712000481")).lastError).toContain("GatewayError (501)");
    expect(await row("+254712000482")).toMatchObject({ status: "pending", attempts: 0 });
    expect(options.gate.allowsSending(clock.now())).toBe(false);
  });

  it("gives a message up once it is a day old and its attempts are spent", async () => {
    const options = outageOptions();
    await enqueue("+254712000451");
    fake.down = true;
    for (let step = 0; step < 23 * 6; step++) {
      await deliverDueSms(options);
      clock.advance(10 * MINUTE);
    }
    expect(await row("+254712000451")).toMatchObject({ status: "pending" });
    for (let step = 0; step < 2 * 6; step++) {
      await deliverDueSms(options);
      clock.advance(10 * MINUTE);
    }
    const given = await row("+254712000451");
    expect(given.status).toBe("dead");
    expect(given.lastError).toContain("HTTP 503");
  });

  it("takes a gateway it cannot reach (connection refused) for an outage: the rest wait", async () => {
    // Made after the options' sender: the package's endpoint is one per process (sms-client.ts).
    const options = workerOptions();
    const unreachable = createAtSmsSender({
      username: "tandao",
      apiKey: "k",
      smsUrl: "http://127.0.0.1:9/version1/messaging",
    });
    const gate = new SmsSendingGate(PAUSE, 30_000, 10 * MINUTE);
    await enqueue("+254712000461", "+254712000462");
    expect(await deliverDueSms({ ...options, sender: unreachable, gate })).toEqual({
      sent: 0,
      retried: 1,
      dead: 0,
    });
    expect((await row("+254712000461")).lastError).toMatch(/ECONNREFUSED/);
    const waiting = await row("+254712000462");
    expect(waiting).toMatchObject({ status: "pending", attempts: 0 });
    expect(waiting.nextAttemptAt.getTime() - clock.now().getTime()).toBe(30_000);
    expect(gate.allowsSending(clock.now())).toBe(false);
  });
});

describe("the worker loop", () => {
  it("keeps its pause across passes instead of trying every message", async () => {
    const options = workerOptions("TANDAO");
    let passes = 0;
    const gate = new (class extends SmsSendingGate {
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
