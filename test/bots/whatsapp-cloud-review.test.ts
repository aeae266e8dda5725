import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyPayment } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { parseTemplateMap } from "../../src/bots/chat-delivery.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { inbound, startWhatsApp, text, type WhatsAppInstance } from "./whatsapp-cloud-world.ts";

/** Review findings on the WhatsApp Cloud API channel and the notices it carries. */

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-05-01T06:00:00Z");
let cloud: FakeWhatsApp;
let wa: WhatsAppInstance;
let planId: number;
let receiptSeq = 0;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  cloud = await startFakeWhatsApp({ now: () => clock.now() });
  cloud.approveTemplate("tandao_receipt", "en", 2);
  cloud.approveTemplate("tandao_suspended", "en", 2);
  wa = startWhatsApp(ctx, cloud, {
    templates: parseTemplateMap(
      "payment_received=tandao_receipt:amountCents|receipt, suspended=tandao_suspended:amountCents|payTo",
    ),
    signing: { isp: "Kibera Net", till: "555111", ussdCode: "*384*123#" },
  });
  planId = (await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" })).id;
});
afterAll(async () => {
  await wa?.channel.stop();
  await cloud?.close();
  await database?.close();
});

async function customer(language: "en" | "sw" = "en") {
  const created = await createCustomerWithSubscription(ctx, admin, {
    name: "Achieng Otieno",
    phone: uniquePhone(),
    planId,
    language,
  });
  return created.customer;
}

async function smsTo(phone: string, template: string) {
  return database.db
    .select()
    .from(messageOutbox)
    .where(
      and(
        eq(messageOutbox.channel, "sms"),
        eq(messageOutbox.recipient, phone),
        eq(messageOutbox.template, template),
      ),
    );
}

describe("a notice Meta accepted, then reported failed (value.statuses)", () => {
  it("goes by SMS once WhatsApp says it could not be delivered (131026), not lost", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("hi")));
    const receipt = `SKF${String(++receiptSeq).padStart(7, "0")}`;
    await applyPayment(ctx, admin, {
      customerId: person.id,
      method: "mpesa_c2b",
      provider: "mpesa",
      providerRef: receipt,
      amountCents: 30_000,
    });
    await wa.channel.sendDue();
    const accepted = cloud.sentTo(waId).at(-1);
    expect(JSON.stringify(accepted?.payload)).toContain(receipt);
    // Meta answered 200 with a wamid; the failure comes afterwards, as a status callback.
    const failed = JSON.stringify({
      object: "whatsapp_business_account",
      entry: [
        {
          id: "WABA-1",
          changes: [
            {
              field: "messages",
              value: {
                messaging_product: "whatsapp",
                metadata: { display_phone_number: "254700000000", phone_number_id: cloud.phoneNumberId },
                statuses: [
                  {
                    id: accepted!.id,
                    status: "failed",
                    timestamp: String(Math.floor(clock.now().getTime() / 1000)),
                    recipient_id: waId,
                    errors: [
                      {
                        code: 131026,
                        title: "Message undeliverable",
                        message: "Message undeliverable",
                        error_data: { details: "Message Undeliverable." },
                      },
                    ],
                  },
                ],
              },
            },
          ],
        },
      ],
    });
    expect(await wa.post(failed)).toBe(200);
    await wa.channel.sendDue();
    expect(await smsTo(person.phone, "payment_received")).toHaveLength(1);
  });
});
