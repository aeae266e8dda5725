import { Writable } from "node:stream";
import { desc, eq } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { enqueueMessage, type OutboundMessage } from "../../src/billing/outbox.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { requestLinkCode } from "../../src/bots/telegram/link-code.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import { loadConfig } from "../../src/config.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox } from "../../src/db/schema/index.ts";
import { requireBox } from "../../src/db/sealed.ts";
import { createLogger } from "../../src/logger.ts";
import { type AtFake, startAtFake } from "../../src/messaging/at-fake.ts";
import { startMessaging } from "../../src/messaging/index.ts";
import { createAtSmsSender, type SmsSender } from "../../src/messaging/sms-client.ts";
import { deliverDueSms, openSecrets, type SmsWorkerOptions } from "../../src/messaging/sms-worker.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
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

const receipt = (recipient: string): OutboundMessage => ({
  recipient,
  language: "en",
  template: "payment_received",
  params: { amountCents: 250_000, balanceCents: 0, account: "TD00001", receipt: "SAB12CD34" },
});
const activated = (recipient: string, password = "s3cretPw42"): OutboundMessage => ({
  recipient,
  language: "en",
  template: "activated",
  params: { plan: "Home 10", periodEndAt: "2026-04-01T08:00:00Z", username: "td00001", password },
});
const received = (to: string) =>
  fake.inbox.filter((m) => m.to === to).map((m) => m.message.split(":")[1]!.trim());

describe("each recipient gets their messages in the order they were written", () => {
  it("sends the receipt before the activation written after it, one message per recipient per pass", async () => {
    await enqueueMessage(database.db, clock.now(), receipt("+254712000101"));
    await enqueueMessage(database.db, clock.now(), activated("+254712000101"));
    await enqueueMessage(database.db, clock.now(), receipt("+254712000102"));
    expect(await deliverDueSms(options)).toEqual({ sent: 2, retried: 0, dead: 0 });
    expect(received("+254712000101")).toEqual([expect.stringMatching(/^We received/)]);
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 0 });
    expect(received("+254712000101")).toEqual([
      expect.stringMatching(/^We received/),
      expect.stringMatching(/^Your internet \(Home 10\) is now active/),
    ]);
  });

  it("goes by the order written, not by when a row falls due", async () => {
    await enqueueMessage(database.db, new Date(clock.now().getTime() + 0), receipt("+254712000103"));
    // Written second, but due a minute earlier.
    await enqueueMessage(database.db, new Date(clock.now().getTime() - MINUTE), activated("+254712000103"));
    await deliverDueSms({ ...options, batchSize: 1 });
    await deliverDueSms({ ...options, batchSize: 1 });
    expect(received("+254712000103")).toEqual([
      expect.stringMatching(/^We received/),
      expect.stringMatching(/now active/),
    ]);
  });

  it("holds later messages back while an earlier one waits for a retry, and lets them go once it is given up", async () => {
    await enqueueMessage(database.db, clock.now(), receipt("+254712000104"));
    await enqueueMessage(database.db, clock.now(), activated("+254712000104"));
    fake.failNext(1, "http");
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 1, dead: 0 });
    // The activation is due, but the receipt before it is not sent yet.
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 0 });
    clock.advance(MINUTE);
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 0 });
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 0 });
    expect(received("+254712000104")).toEqual([
      expect.stringMatching(/^We received/),
      expect.stringMatching(/now active/),
    ]);

    await enqueueMessage(database.db, clock.now(), { ...receipt("+254712000105"), params: {} });
    await database.db
      .update(messageOutbox)
      .set({ template: "no_such_template" })
      .where(eq(messageOutbox.recipient, "+254712000105"));
    await enqueueMessage(database.db, clock.now(), activated("+254712000105"));
    expect(await deliverDueSms(options)).toEqual({ sent: 0, retried: 0, dead: 1 });
    expect(await deliverDueSms(options)).toEqual({ sent: 1, retried: 0, dead: 0 });
  });

  it("never lets two workers send one recipient's messages out of order", async () => {
    for (let i = 0; i < 6; i++) {
      await enqueueMessage(database.db, clock.now(), receipt(`+25471200020${i}`));
      await enqueueMessage(database.db, clock.now(), activated(`+25471200020${i}`));
    }
    // A gateway that answers slowly, recording when each send started and ended.
    const log: { to: string; text: string; at: "start" | "end" }[] = [];
    const slow: SmsSender = {
      async send(to, text) {
        log.push({ to, text, at: "start" });
        await new Promise((r) => setTimeout(r, 20));
        log.push({ to, text, at: "end" });
        return { messageId: `m${log.length}` };
      },
    };
    for (let round = 0; round < 8; round++) {
      await Promise.all([1, 2, 3].map(() => deliverDueSms({ ...options, sender: slow, batchSize: 1 })));
    }
    for (let i = 0; i < 6; i++) {
      const to = `+25471200020${i}`;
      const mine = log.filter((e) => e.to === to);
      expect(mine.map((e) => `${e.at}:${e.text.includes("We received") ? "receipt" : "active"}`)).toEqual([
        "start:receipt",
        "end:receipt",
        "start:active",
        "end:active",
      ]);
    }
  });
});

describe("a subscriber's password never reaches a log", () => {
  it("is masked in what the worker reports and in a gateway error it keeps", async () => {
    // Stored sealed, as billing writes it (src/db/sealed.ts); sent in the clear to the subscriber only.
    await enqueueMessage(
      database.db,
      clock.now(),
      activated("+254712000301", requireBox().seal("Pw9xKq2Lm")),
    );
    const reported: string[] = [];
    await deliverDueSms({ ...options, onSent: (sms) => reported.push(sms.text) });
    expect(fake.inbox[0]!.message).toContain("password: Pw9xKq2Lm");
    expect(reported).toEqual([expect.stringContaining("password: ********")]);
    expect(reported.join()).not.toContain("Pw9xKq2Lm");

    await enqueueMessage(
      database.db,
      clock.now(),
      activated("+254712000302", requireBox().seal("Zt7yHw3Rn")),
    );
    const echoing: SmsSender = {
      send: async (_to, text) => {
        throw new Error(`rejected: ${text}`);
      },
    };
    await deliverDueSms({ ...options, sender: echoing });
    const [row] = await database.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.recipient, "+254712000302"));
    expect(row!.lastError).toContain("rejected:");
    expect(row!.lastError).not.toContain("Zt7yHw3Rn");
  });

  it("sandbox mode logs every SMS it sends, with the password masked", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    await enqueueMessage(database.db, clock.now(), activated("+254712000303", "Qm4vBn8Xc"));
    const messaging = await startMessaging({
      config: loadConfig({ ISP_NAME: "Kibera Net" }),
      db: database.db,
      clock,
      logger: createLogger("info", sink),
    });
    try {
      const sms = await messaging.fake!.waitFor((m) => m.to === "+254712000303");
      expect(sms.message).toContain("password: Qm4vBn8Xc");
    } finally {
      await messaging.stop();
    }
    const logged = lines.join("");
    expect(logged).toContain("SMS to +254712000303: Kibera Net: Your internet (Home 10) is now active");
    expect(logged).toContain("password: ********");
    expect(logged).not.toContain("Qm4vBn8Xc");
  });
});

describe("a chat link code never reaches a log", () => {
  it("is kept sealed, sent in the clear to the phone only, masked in what the worker logs and keeps", async () => {
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    // Only the code is queued (the welcome SMS would go first: one message per recipient per pass).
    await database.db.delete(messageOutbox);
    const newCode = async () => {
      await requestLinkCode(database.db, {
        channel: "telegram",
        chatId: "4242",
        account: customer.accountNumber,
        now: clock.now(),
      });
      const [sms] = await database.db
        .select()
        .from(messageOutbox)
        .where(eq(messageOutbox.template, "chat_link_code"))
        .orderBy(desc(messageOutbox.id))
        .limit(1);
      return {
        id: sms!.id,
        stored: JSON.stringify(sms!.params),
        code: String(openSecrets(sms!.template, sms!.params).code),
      };
    };
    const first = await newCode();
    expect(first.code).toMatch(/^\d{6}$/);
    expect(first.stored).not.toContain(first.code);
    const delivered: string[] = [];
    const reported: string[] = [];
    const gateway: SmsSender = {
      send: async (_to, text) => {
        delivered.push(text);
        return { messageId: "ATXid_1" };
      },
    };
    await deliverDueSms({ ...options, sender: gateway, onSent: (sms) => reported.push(sms.text) });
    expect(delivered).toEqual([expect.stringContaining(`is ${first.code}.`)]);
    expect(reported).toEqual([expect.stringContaining("is ********.")]);

    clock.advance(MINUTE);
    const second = await newCode();
    const logged: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        logged.push(String(chunk));
        done();
      },
    });
    // A gateway's complaint that quotes the message, as the worker expects some to do.
    const echoing: SmsSender = {
      send: async (_to, text) => {
        throw new Error(`rejected: ${text}`);
      },
    };
    await deliverDueSms({ ...options, sender: echoing, logger: createLogger("trace", sink) });
    const [after] = await database.db.select().from(messageOutbox).where(eq(messageOutbox.id, second.id));
    expect(after!.lastError).toContain("rejected:");
    // Whoever reads the log or the admin chat's failed list could link their chat to the account.
    expect(after!.lastError).not.toContain(second.code);
    expect(logged.join("")).not.toContain(second.code);
  });
});
