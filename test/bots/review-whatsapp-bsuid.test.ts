import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatInbox } from "../../src/db/schema/index.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { newMessageId, startWhatsApp, type WhatsAppInstance } from "./whatsapp-cloud-world.ts";

let database: Database;
let fake: FakeWhatsApp;
let wa: WhatsAppInstance;
const clock = new FakeClock("2026-07-01T06:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
  const { ctx } = billingContext(database.db, clock);
  fake = await startFakeWhatsApp();
  wa = startWhatsApp(ctx, fake);
});
afterAll(async () => {
  await wa?.channel.stop();
  await fake?.close();
  await database?.close();
});

describe("a WhatsApp user known to the business only by their business-scoped user id", () => {
  it("has their message stored (and so answered), not acknowledged and dropped", async () => {
    // A user who adopted a username: Meta withholds the phone (`from`, `wa_id`) and sends the BSUID.
    const bsuid = "KE.1502576394655843";
    const id = newMessageId();
    const body = JSON.stringify({
      object: "whatsapp_business_account",
      entry: [
        {
          id: "WABA-1",
          changes: [
            {
              field: "messages",
              value: {
                messaging_product: "whatsapp",
                metadata: { display_phone_number: "254700000000", phone_number_id: fake.phoneNumberId },
                contacts: [{ profile: { name: "Achieng", username: "achieng" }, user_id: bsuid }],
                messages: [
                  {
                    from_user_id: bsuid,
                    id,
                    timestamp: String(Math.floor(clock.now().getTime() / 1000)),
                    type: "text",
                    text: { body: "hi" },
                  },
                ],
              },
            },
          ],
        },
      ],
    });
    expect(await wa.post(body)).toBe(200);
    // Meta was told 200: it will not deliver this message again. It must be in the inbox.
    const stored = await database.db.select().from(chatInbox).where(eq(chatInbox.externalId, id));
    expect(stored).toHaveLength(1);
  });
});
