import { eq } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { enqueueMessage } from "../../src/billing/outbox.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox } from "../../src/db/schema/index.ts";
import { type AtFake, startAtFake } from "../../src/messaging/at-fake.ts";
import { createAtSmsSender } from "../../src/messaging/sms-client.ts";
import { deliverDueSms, retryDelayMs, type SmsWorkerOptions } from "../../src/messaging/sms-worker.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
let fake: AtFake;
let options: SmsWorkerOptions;
const clock = new FakeClock("2026-03-01T08:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
  fake = await startAtFake({ username: "tandao", apiKey: "test-key" });
  options = {
    db: database.db,
    clock,
    sender: createAtSmsSender({ username: "tandao", apiKey: "test-key", smsUrl: fake.smsUrl }),
    isp: "Kibera Net",
    maxAttempts: 3,
    baseDelayMs: MINUTE,
  };
});
afterAll(async () => {
  await fake.close();
  await database.close();
});
beforeEach(async () => {
  await database.db.delete(messageOutbox);
  fake.inbox.length = 0;
});

async function row(recipient: string) {
  const [found] = await database.db
    .select()
    .from(messageOutbox)
    .where(eq(messageOutbox.recipient, recipient));
  return found!;
}

describe("SMS delivery through the africastalking package", () => {
  it("renders the template in the row's language and posts it to the gateway", async () => {
    await enqueueMessage(database.db, clock.now(), {
      recipient: "+254712000001",
      language: "sw",
      template: "voucher_code",
      params: { code: "K7P2QX", plan: "Saa 1", validity: "2026-03-01T09:00:00.000Z" },
    });
    await enqueueMessage(database.db, clock.now(), {
      recipient: "0712000002",
      language: "en",
      template: "payment_received",
      params: { amountCents: 150000, balanceCents: 0, account: "TN0042", receipt: "SAB12CD34" },
    });
    expect(await deliverDueSms(options)).toEqual({ sent: 2, retried: 0, dead: 0 });
    const sw = fake.inbox.find((m) => m.to === "+254712000001")!;
    expect(sw.message).toContain(
      "Nambari ya vocha yako ya Saa 1 ni K7P2QX, inatumika hadi 1 Mac 2026 12:00.",
    );
    expect(sw.username).toBe("tandao");
    const en = fake.inbox.find((m) => m.to === "+254712000002")!;
    expect(en.message).toBe(
      "Kibera Net: We received KES 1,500 (M-Pesa SAB12CD34) for account TN0042. Balance: KES 0. Thank you.",
    );
    const stored = await row("0712000002");
    expect(stored.status).toBe("done");
    expect(stored.providerMessageId).toBe(en.messageId);
    expect(stored.sentAt).toEqual(clock.now());
    // A second pass sends nothing again.
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 0 });
    expect(fake.inbox).toHaveLength(2);
  });

  it("retries a message the gateway did not take with exponential backoff, then gives up and records why", async () => {
    await enqueueMessage(database.db, clock.now(), {
      recipient: "+254712000003",
      language: "en",
      template: "restored",
      params: { periodEndAt: "2026-04-01T00:00:00Z" },
    });
    fake.failNext(1, "recipient");
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 1, dead: 0 });
    let stored = await row("+254712000003");
    expect(stored).toMatchObject({ status: "pending", attempts: 1 });
    expect(stored.lastError).toContain("RejectedByGateway (502)");
    expect(stored.nextAttemptAt.getTime() - clock.now().getTime()).toBe(MINUTE);

    // Not due yet: nothing is sent before the backoff has passed.
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 0 });

    clock.advance(MINUTE);
    fake.failNext(1, "recipient");
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 1, dead: 0 });
    stored = await row("+254712000003");
    expect(stored.attempts).toBe(2);
    expect(stored.nextAttemptAt.getTime() - clock.now().getTime()).toBe(2 * MINUTE);

    clock.advance(2 * MINUTE);
    fake.failNext(1, "recipient");
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 1 });
    stored = await row("+254712000003");
    expect(stored).toMatchObject({ status: "dead", attempts: 3 });
    clock.advance(60 * MINUTE);
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 0 });
    expect(fake.inbox).toHaveLength(0);
  });

  it("delivers on a retry after a transient failure", async () => {
    await enqueueMessage(database.db, clock.now(), {
      recipient: "+254712000004",
      language: "en",
      template: "plan_changed",
      params: { plan: "Home 10", chargeCents: 50000 },
    });
    fake.failNext(1);
    await deliverDueSms(options);
    clock.advance(MINUTE);
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 0 });
    expect(await row("+254712000004")).toMatchObject({ status: "done", attempts: 2, lastError: null });
    expect(fake.inbox[0]!.message).toBe(
      "Kibera Net: Your plan is now Home 10. Charged KES 500 for the rest of this period.",
    );
  });

  it("marks an undeliverable row dead at once: bad number or unknown template", async () => {
    await enqueueMessage(database.db, clock.now(), {
      recipient: "not-a-phone",
      language: "en",
      template: "restored",
      params: {},
    });
    await database.db.insert(messageOutbox).values({
      channel: "sms",
      recipient: "+254712000005",
      template: "no_such_template",
      nextAttemptAt: clock.now(),
      createdAt: clock.now(),
    });
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 2 });
    expect((await row("not-a-phone")).lastError).toContain("invalid phone number");
    expect((await row("+254712000005")).lastError).toContain("unknown template");
  });

  it("leaves other channels to their own workers", async () => {
    await enqueueMessage(database.db, clock.now(), {
      channel: "telegram",
      recipient: "12345",
      language: "en",
      template: "admin_alert",
      params: { text: "router down" },
    });
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 0 });
  });

  it("doubles the delay up to a cap", () => {
    expect([1, 2, 3, 4, 10].map((n) => retryDelayMs(n, 1000, 5000))).toEqual([1000, 2000, 4000, 5000, 5000]);
  });

  it("rejects a wrong API key at the gateway and records it", async () => {
    const wrong = createAtSmsSender({ username: "tandao", apiKey: "wrong", smsUrl: fake.smsUrl });
    await enqueueMessage(database.db, clock.now(), {
      recipient: "+254712000006",
      language: "en",
      template: "restored",
      params: { periodEndAt: "2026-04-01T00:00:00Z" },
    });
    expect(await deliverDueSms({ ...options, sender: wrong })).toEqual({ sent: 0, retried: 1, dead: 0 });
    expect((await row("+254712000006")).lastError).toContain("401");
  });
});

describe("a gateway that never answers", () => {
  it("times the send out, records the failure and retries later instead of hanging the worker", async () => {
    await enqueueMessage(database.db, clock.now(), {
      recipient: "+254712000077",
      language: "en",
      template: "restored",
      params: { periodEndAt: "2026-04-01T08:00:00.000Z" },
    });
    const silent = { send: () => new Promise<never>(() => {}) };
    const counts = await deliverDueSms({ ...options, sender: silent, sendTimeoutMs: 50 });
    expect(counts).toEqual({ sent: 0, retried: 1, dead: 0 });
    const stuck = await row("+254712000077");
    expect(stuck).toMatchObject({ status: "pending", attempts: 1 });
    expect(stuck.lastError).toMatch(/did not answer/);
  });
});
