import { Writable } from "node:stream";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { requestLinkCode } from "../../src/bots/telegram/link-code.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox } from "../../src/db/schema/index.ts";
import { createLogger } from "../../src/logger.ts";
import type { SmsSender } from "../../src/messaging/sms-client.ts";
import { deliverDueSms } from "../../src/messaging/sms-worker.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
const clock = new FakeClock("2026-03-01T08:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("a chat link code never reaches a log", () => {
  it("is masked in a gateway error the worker logs and keeps, as a password is", async () => {
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    // Only the code is queued (the welcome SMS would go first: one message per recipient per pass).
    await database.db.delete(messageOutbox);
    await requestLinkCode(database.db, {
      channel: "telegram",
      chatId: "4242",
      account: customer.accountNumber,
      now: clock.now(),
    });
    const [sms] = await database.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.template, "chat_link_code"));
    const code = String(sms!.params.code);

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
    await deliverDueSms({
      db: database.db,
      clock,
      sender: echoing,
      isp: "Kibera Net",
      maxAttempts: 3,
      baseDelayMs: MINUTE,
      logger: createLogger("trace", sink),
    });
    const [after] = await database.db.select().from(messageOutbox).where(eq(messageOutbox.id, sms!.id));
    expect(after!.lastError).toContain("rejected:");
    // Whoever reads the log or the admin chat's failed list could link their chat to the account.
    expect(after!.lastError).not.toContain(code);
    expect(logged.join("")).not.toContain(code);
  });
});
