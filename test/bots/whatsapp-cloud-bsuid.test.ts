import { count, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatInbox, chatLinks, customers } from "../../src/db/schema/index.ts";
import type { MenuSettings } from "../../src/menu/types.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { settings } from "../ussd/world.ts";
import {
  bodyOf,
  listReply,
  newMessageId,
  optionIdOf,
  optionsOf,
  startWhatsApp,
  text,
  type WhatsAppInstance,
} from "./whatsapp-cloud-world.ts";

/**
 * Senders who adopted a WhatsApp username may come by business-scoped user id (BSUID) alone, without
 * their number (`from_user_id`, `contacts[].user_id`); answers to them go to `recipient`.
 */

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
let fake: FakeWhatsApp;
let wa: WhatsAppInstance;
const clock = new FakeClock("2026-05-01T06:00:00Z");
const signupSettings: MenuSettings = { ...settings, signupAreas: [{ name: "Githurai 45", routerId: null }] };
let userSeq = 1_502_576_394_655_000;
const newUserId = () => `KE.${++userSeq}`;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  await createPlan(database.db, {
    name: "1 Hour",
    kind: "hotspot",
    priceCents: 2_000,
    periodUnit: "hours",
    timeLimitSeconds: 3600,
  });
  fake = await startFakeWhatsApp({ now: () => clock.now() });
  wa = startWhatsApp(ctx, fake, { settings: signupSettings });
});
afterAll(async () => {
  await wa?.channel.stop();
  await fake?.close();
  await database?.close();
});

/** A webhook body as Meta sends it from April 2026: the sender's number only when they gave it. */
function inboundFrom(
  sender: { waId?: string; userId?: string },
  message: Record<string, unknown>,
  id = newMessageId(),
): string {
  for (const address of [sender.waId, sender.userId]) if (address) fake.userWrote(address);
  return JSON.stringify({
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
              contacts: [
                {
                  profile: { name: "Achieng", username: "@achieng" },
                  ...(sender.waId ? { wa_id: sender.waId } : {}),
                  ...(sender.userId ? { user_id: sender.userId } : {}),
                },
              ],
              messages: [
                {
                  ...(sender.waId ? { from: sender.waId } : {}),
                  ...(sender.userId ? { from_user_id: sender.userId } : {}),
                  id,
                  timestamp: String(Math.floor(clock.now().getTime() / 1000)),
                  ...message,
                },
              ],
            },
          },
        ],
      },
    ],
  });
}

const stored = (id: string) => database.db.select().from(chatInbox).where(eq(chatInbox.externalId, id));

describe("a sender named by business-scoped user id only", () => {
  it("stores a message that names its sender by business-scoped user id only, rather than dropping it", async () => {
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
                contacts: [
                  { profile: { name: "Achieng", username: "@achieng" }, user_id: "KE.1502576394655843" },
                ],
                messages: [
                  {
                    from_user_id: "KE.1502576394655843",
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
    fake.userWrote("KE.1502576394655843");
    expect(await wa.post(body)).toBe(200);
    expect(await stored(id)).toHaveLength(1);
    // The answer is addressed to the BSUID, as Meta takes it when there is no number.
    const menu = fake.sentTo("KE.1502576394655843").at(-1);
    expect(menu?.payload).toMatchObject({ recipient: "KE.1502576394655843", type: "interactive" });
    expect(menu?.payload).not.toHaveProperty("to");
  });

  it("is the same chat as their number once a message carried both: link, menu place and all", async () => {
    const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const waId = customer.phone.slice(1);
    const userId = newUserId();
    await wa.post(inboundFrom({ waId, userId }, text("hi")));
    expect(bodyOf(fake.sentTo(waId).at(0))).toBe(`Linked to account ${customer.accountNumber}.`);
    const menu = fake.sentTo(waId).at(-1);

    // Later the number is left out: the button they press is still theirs, answered at their number.
    const sent = fake.sent.length;
    await wa.post(inboundFrom({ userId }, listReply(optionIdOf(menu, "1."))));
    expect(fake.sent.length).toBe(sent + 1);
    expect(bodyOf(fake.sentTo(waId).at(-1))).toBe(
      "Plan: Fibre 1500\nStatus: Awaiting first payment\nAmount due: KES 1,500\nNo payment yet",
    );
    expect(fake.sentTo(userId)).toEqual([]);
    expect(await database.db.select().from(chatLinks).where(eq(chatLinks.chatId, userId))).toEqual([]);
  });

  it("gets the visitor's menu, and is told WhatsApp did not share their number, not that it is foreign", async () => {
    const userId = newUserId();
    const customersBefore = (await database.db.select({ n: count() }).from(customers))[0]!.n;
    const say = async (body: string) => {
      await wa.post(inboundFrom({ userId }, text(body)));
      return fake.sentTo(userId).at(-1);
    };
    const menu = await say("hi");
    expect(optionsOf(menu).map((o) => o.title)).toEqual([
      "1. Buy hotspot voucher",
      "2. Sign up",
      "3. Language",
      "4. Help",
    ]);
    const voucher = await say("1");
    expect(bodyOf(voucher)).toBe(
      "Vouchers are paid with M-Pesa from your phone number, and WhatsApp has not shared yours with us. Connect to the hotspot's Wi-Fi to buy one on its page.",
    );
    expect(optionsOf(voucher)).toEqual([]);

    await say("menu");
    await say("3");
    await say("2");
    expect(bodyOf(await say("1"))).toMatch(/Kiswahili/);
    await say("mwanzo");
    expect(bodyOf(await say("2"))).toBe(
      "Ili kujisajili unahitaji nambari ya simu ya Kenya (+254): M-Pesa hulipa kutoka kwayo, na WhatsApp haijatushirikisha nambari yako. Kujiunga, piga simu au tuma WhatsApp 0700 123 456.",
    );
    expect((await database.db.select({ n: count() }).from(customers))[0]!.n).toBe(customersBefore);
  });

  it("drops a message whose only sender id is not a BSUID, and ignores a malformed one beside a number", async () => {
    const dropped = newMessageId();
    expect(await wa.post(inboundFrom({ userId: "not a bsuid" }, text("hi"), dropped))).toBe(200);
    expect(await stored(dropped)).toEqual([]);
    expect(fake.sentTo("not a bsuid")).toEqual([]);

    const waId = uniquePhone().slice(1);
    const kept = newMessageId();
    expect(await wa.post(inboundFrom({ waId, userId: "KE.has-dash" }, text("hi"), kept))).toBe(200);
    expect(await stored(kept)).toHaveLength(1);
    expect(optionsOf(fake.sentTo(waId).at(-1))[0]?.title).toBe("1. Buy hotspot voucher");
  });
});

describe("the fake Graph API", () => {
  const post = (payload: Record<string, unknown>) =>
    fetch(`${fake.graphUrl}/${fake.phoneNumberId}/messages`, {
      method: "POST",
      headers: { authorization: `Bearer ${fake.token}`, "content-type": "application/json" },
      body: JSON.stringify({ messaging_product: "whatsapp", type: "text", text: { body: "hi" }, ...payload }),
    });

  it("refuses a message addressed neither `to` a number nor to a `recipient`, as Meta does", async () => {
    const answer = await post({});
    expect(answer.status).toBe(400);
    expect(((await answer.json()) as { error: { code: number } }).error.code).toBe(100);
  });

  it("takes `to` over `recipient` when both are given", async () => {
    const waId = uniquePhone().slice(1);
    fake.userWrote(waId);
    expect((await post({ to: waId, recipient: "KE.77" })).status).toBe(200);
    expect(fake.sent.at(-1)?.to).toBe(waId);
  });
});
