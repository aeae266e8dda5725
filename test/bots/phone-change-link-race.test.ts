import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { editCustomer } from "../../src/billing/customer-edit.ts";
import { phoneChat } from "../../src/bots/phone-link.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Db } from "../../src/db/client.ts";
import { chatLinks, customers } from "../../src/db/schema/index.ts";
import { waitFor } from "../network/support.ts";
import { admin, billingContext } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";
import { sessionsWaitingForLocks } from "../support/locks.ts";

/**
 * A WhatsApp message from a customer's old number while an admin moves the account to a new one:
 * the chat must not end up linked to the account (its receipts, reminders and router login would
 * go to the old number's owner for good).
 */

let database: TestDatabase;
const clock = new FakeClock("2026-08-01T06:00:00Z");
beforeAll(async () => {
  database = await createTestDatabase({ maxConnections: 4 });
});
afterAll(async () => {
  await database?.close();
});

describe.runIf(onRealPostgres())("a chat of the old number during a phone change", () => {
  it("is not linked to the account once the change is saved", async () => {
    const db = database.db;
    const [customer] = await db
      .insert(customers)
      .values({ accountNumber: "TDRACE1", phone: "+254700000777", name: "New Sim" })
      .returning();
    let letCommit!: () => void;
    const commit = new Promise<void>((resolve) => {
      letCommit = resolve;
    });
    let saved!: () => void;
    const written = new Promise<void>((resolve) => {
      saved = resolve;
    });
    // The admin's change, written and not yet committed.
    const change = db.transaction(async (tx) => {
      const { ctx } = billingContext(tx as unknown as Db, clock);
      await editCustomer(ctx, admin, {
        customerId: customer!.id,
        change: { field: "phone", phone: "+254711000777" },
      });
      saved();
      await commit;
    });
    await written;
    const before = await sessionsWaitingForLocks(db);
    const inbound = phoneChat(db, "whatsapp", "254700000777");
    // The message waits for the change (the customer row is locked), then reads the number again.
    await waitFor(async () => (await sessionsWaitingForLocks(db)) > before);
    letCommit();
    await change;
    expect(await inbound).toEqual({ phone: "+254700000777", newlyLinked: null });
    const links = await db.select().from(chatLinks).where(eq(chatLinks.customerId, customer!.id));
    expect(links).toEqual([]);
  });
});
