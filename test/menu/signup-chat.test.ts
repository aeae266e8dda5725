import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChatMenu, type ChatView, createChatMenu } from "../../src/bots/chat-menu.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { customers, subscriptions } from "../../src/db/schema/index.ts";
import { createLogger } from "../../src/logger.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { longSettings } from "./fake-services.ts";

/** The same sign-up screens in a chat (WhatsApp, Telegram), driven through the chat menu. */

let database: Database;
let chat: ChatMenu;
const clock = new FakeClock("2026-06-01T06:00:00Z");
let planName: string;

beforeAll(async () => {
  database = await createTestDatabase();
  const { ctx } = billingContext(database.db, clock);
  planName = `Chat Home ${process.pid % 1000}`;
  await createPlan(database.db, { name: planName, priceCents: 300_000 });
  chat = createChatMenu({
    db: database.db,
    services: createMenuServices(ctx, { planCacheMs: 0 }),
    settings: {
      ...longSettings,
      signupAreas: [{ name: "Githurai 45", routerId: null }],
      adminPhone: undefined,
    },
    logger: createLogger("silent"),
    clock,
  });
});
afterAll(async () => {
  await database?.close();
});

/** A WhatsApp chat with the phone its channel gives (null: not served); undefined: a Telegram chat. */
async function say(chatId: string, phone: string | null | undefined, text: string): Promise<ChatView> {
  const reply = await chat.handle({
    channel: phone === undefined ? "telegram" : "whatsapp_cloud",
    chatId,
    ...(phone === undefined ? {} : { phone }),
    input: { kind: "text", text },
  });
  if (reply.kind !== "view") throw new Error(`stale answer to ${text}`);
  return reply.view;
}

describe("self sign-up in a chat", () => {
  it("signs up a WhatsApp number by choosing and typing", async () => {
    const phone = uniquePhone();
    const chatId = phone.slice(1);
    const home = await say(chatId, phone, "hi");
    expect(home.options.find((o) => o.key === "2")?.label).toBe("Sign up");
    const plans = await say(chatId, phone, "2");
    const item = plans.options.find((o) => o.label.startsWith(planName));
    expect(item, JSON.stringify(plans.options)).toBeDefined();
    expect((await say(chatId, phone, item!.key)).lines).toEqual(["Type your full name:"]);
    expect((await say(chatId, phone, "Halima Chebet")).screen).toBe("signupArea");
    expect((await say(chatId, phone, "1")).lines[0]).toBe("Sign up Halima Chebet in Githurai 45?");
    const done = await say(chatId, phone, "1");
    expect(done.end).toBe(true);
    const [customer] = await database.db.select().from(customers).where(eq(customers.phone, phone));
    expect(done.lines.join(" ")).toContain(customer!.accountNumber);
    const subs = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.customerId, customer!.id));
    expect(subs).toMatchObject([{ status: "pending", routerId: null }]);
    // The next message starts over, now with the customer's menu.
    expect((await say(chatId, phone, "hi")).options[0]?.label).toBe("My account");
  });

  it("asks a Telegram chat that has not shared its phone number to share it first", async () => {
    await say("tg-visitor-1", undefined, "hi");
    const view = await say("tg-visitor-1", undefined, "2");
    expect(view.screen).toBe("signup");
    expect(view.end).toBe(false);
    expect(view.needsPhone).toBe("pay");
    expect(view.lines.join(" ")).toContain("share your phone number");
    // Choosing anything there creates nothing.
    expect((await say("tg-visitor-1", undefined, "1")).screen).toBe("signup");
  });

  it("tells a WhatsApp number that is not served that sign-up needs a Kenyan number, and ends", async () => {
    await say("447700900777", null, "hi");
    const view = await say("447700900777", null, "2");
    expect(view).toMatchObject({ screen: "signup", end: true, options: [] });
    expect(view.needsPhone).toBeUndefined();
    expect(view.lines.join(" ")).toContain("a phone number from Kenya (+254)");
  });
});
