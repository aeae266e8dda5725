import { Writable } from "node:stream";
import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { claimUnhandled } from "../../src/bots/chat-inbox.ts";
import type { FakeTelegram } from "../../src/bots/telegram/fake-api.ts";
import { FakeClock } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import { chatSessions } from "../../src/db/schema/index.ts";
import { createLogger } from "../../src/logger.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { admin, billingContext, count, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { silent } from "../ussd/world.ts";
import {
  button,
  buttonsOf,
  contactUpdate,
  type Instance,
  lastMenuIn,
  lastShownIn,
  postUpdate,
  pressUpdate,
  SECRET,
  sendQueued,
  shownIn,
  startFakeTelegram,
  startInstance,
  textUpdate,
} from "./world.ts";

/**
 * A chat's next menu input after one this instance answered is stored and answered by one
 * statement, from the chat's state kept in memory (src/bots/chat-known.ts). What is kept is only a
 * speed-up: whatever changed the chat since (an admin, the customer's record, another instance)
 * must show in the answer, a redelivery must change nothing, and every input stays in the inbox.
 */

let database: Database;
let fake: FakeTelegram;
let ctx: ReturnType<typeof billingContext>["ctx"];
let first: Instance;
let second: Instance;
const clock = new FakeClock("2026-04-03T06:00:00Z");
let nextUser = 7_700_000;

beforeAll(async () => {
  database = await createTestDatabase();
  fake = await startFakeTelegram();
  ctx = billingContext(database.db, clock).ctx;
  // Two instances of the app: each keeps the states of the chats it answered.
  first = startInstance(ctx, fake);
  second = startInstance(ctx, fake);
});
afterAll(async () => {
  await fake?.close();
  await database?.close();
});

/** A customer's chat, linked by sharing their contact, at the main menu (answered by `first`). */
async function customerChat() {
  const chat = ++nextUser;
  const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
  const { customer } = await createCustomerWithSubscription(ctx, admin, {
    name: "Wanjiru Kamau",
    phone: uniquePhone(),
    planId: plan.id,
  });
  await first.deliver(contactUpdate(chat, { user_id: chat, phone_number: customer.phone }));
  await first.deliver(textUpdate(chat, "/start"));
  expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toBe("1. My account");
  return { chat, customer };
}

const stepOf = async (chat: number) => {
  const [row] = await database.db
    .select({ step: chatSessions.step })
    .from(chatSessions)
    .where(and(eq(chatSessions.channel, "telegram"), eq(chatSessions.chatId, String(chat))));
  return row?.step;
};

const inboxOf = (chat: number) =>
  queryRows<{ status: string; attempts: number }>(
    database.db,
    sql`select status, attempts from chat_inbox where channel = 'telegram' and chat_id = ${String(chat)}
        order by id`,
  );

const say = (instance: Instance, chat: number, text: string) => instance.deliver(textUpdate(chat, text));

const press = (instance: Instance, chat: number, label: string) => {
  const menu = lastMenuIn(fake, chat);
  return instance.deliver(pressUpdate(fake, chat, menu.messageId!, button(menu, label)));
};

describe("a chat's next input, answered from the state this instance kept", () => {
  it("answers it, and keeps it in the inbox as handled once", async () => {
    const { chat } = await customerChat();
    expect(first.known.has("telegram", String(chat))).toBe(true);
    const step = await stepOf(chat);

    expect(await press(first, chat, "6. Help")).toBe(200);
    expect(lastShownIn(fake, chat).payload.text).toContain("Help: call or WhatsApp");
    expect(await stepOf(chat)).toBe(step! + 1);
    expect(await say(first, chat, "0")).toBe(200);
    expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toBe("1. My account");
    expect(await stepOf(chat)).toBe(step! + 2);
    // The contact, /start, the press and the typed "0": each in the inbox, handled once.
    expect(await inboxOf(chat)).toEqual(Array.from({ length: 4 }, () => ({ status: "done", attempts: 1 })));
  });

  it("shows a change made to the customer meanwhile: their language", async () => {
    const { chat, customer } = await customerChat();
    await database.db.execute(sql`update customers set language = 'sw' where id = ${customer.id}`);
    await say(first, chat, "menu");
    expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toBe("1. Akaunti yangu");
  });

  it("shows that the chat was unlinked meanwhile: a visitor's menu", async () => {
    const { chat } = await customerChat();
    await database.db.execute(
      sql`delete from chat_links where channel = 'telegram' and chat_id = ${String(chat)}`,
    );
    await say(first, chat, "menu");
    expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toBe("1. Buy hotspot voucher");
  });

  it("answers from where the chat is when another instance answered it meanwhile", async () => {
    const { chat, customer } = await customerChat();
    const step = await stepOf(chat);
    // The second instance takes the press: the chat is on the help screen now.
    await press(second, chat, "6. Help");
    // A typed "1" is a choice on the help screen (none there), not "My account" of the main menu
    // the first instance last showed.
    await say(first, chat, "1");
    const shown = lastShownIn(fake, chat).payload.text as string;
    expect(shown).toContain("Invalid choice.");
    expect(shown).toContain(customer.accountNumber);
    expect(shown).not.toContain("Plan:");
    expect(await stepOf(chat)).toBe(step! + 2);
    expect((await inboxOf(chat)).every((row) => row.status === "done" && row.attempts === 1)).toBe(true);
  });

  it("changes nothing when the same update comes again", async () => {
    const { chat } = await customerChat();
    const update = textUpdate(chat, "6");
    expect(await first.deliver(update)).toBe(200);
    const step = await stepOf(chat);
    const answers = shownIn(fake, chat).length;
    // Again to the instance that answered it, which kept the chat's state, then to the other.
    expect(await first.deliver(update)).toBe(200);
    expect(await second.deliver(update)).toBe(200);
    expect(shownIn(fake, chat)).toHaveLength(answers);
    expect(await stepOf(chat)).toBe(step);
    expect(await inboxOf(chat)).toHaveLength(3);
  });

  it("answers an update delivered to two instances at once once, for chats both kept", async () => {
    const chats = [];
    for (let n = 0; n < 12; n++) chats.push(await customerChat());
    const steps = await Promise.all(chats.map(({ chat }) => stepOf(chat)));
    for (const { chat } of chats) {
      // Both instances last saw the chat at the same step (as after a restart of one of them, say).
      const { state, screen } = first.known.take("telegram", String(chat), clock.now())!;
      first.known.remember("telegram", String(chat), state, screen);
      second.known.remember("telegram", String(chat), state, screen);
    }
    const before = new Map(chats.map(({ chat }) => [chat, shownIn(fake, chat).length]));
    const updates = chats.map(({ chat }) => textUpdate(chat, "6"));
    const statuses = await Promise.all(
      updates.flatMap((update) =>
        [first, second].map((instance) => postUpdate(instance.app, "/hooks/tg", update, SECRET, fake)),
      ),
    );
    expect(statuses.every((status) => status === 200)).toBe(true);
    await sendQueued(ctx, fake);
    for (const [index, { chat }] of chats.entries()) {
      const shown = shownIn(fake, chat);
      expect(shown).toHaveLength(before.get(chat)! + 1);
      expect(shown.at(-1)?.payload.text).toContain("Help: call or WhatsApp");
      expect(await stepOf(chat)).toBe(steps[index]! + 1);
    }
    expect(
      await count(
        database.db,
        sql`select count(*)::int as n from chat_inbox where status = 'done'
            and external_id in ${updates.map((u) => String(u.update_id))}`,
      ),
    ).toBe(chats.length);
  });
});

describe("a known chat's input that acts", () => {
  it("is stored before anything acts on it", async () => {
    // An instance whose payment requests first look at what the inbox holds for the chat.
    const menuServices = createMenuServices(ctx, { planCacheMs: 0 });
    const unhandledAtRequest: number[] = [];
    let chatOfRequest = "";
    const paying = startInstance(ctx, fake, silent, {
      ...menuServices,
      async requestPayment(user, session, request) {
        unhandledAtRequest.push(
          await count(
            database.db,
            sql`select count(*)::int as n from chat_inbox where channel = 'telegram'
                and chat_id = ${chatOfRequest} and status <> 'done'`,
          ),
        );
        return menuServices.requestPayment(user, session, request);
      },
    });
    const pressFirst = () => press(paying, chat, "1.");

    const { chat } = await customerChat();
    chatOfRequest = String(chat);
    await say(paying, chat, "menu");
    expect(paying.known.has("telegram", chatOfRequest)).toBe(true);
    await press(paying, chat, "2. Pay");
    // Pay what is due, then confirm: the payment is asked for once the press is in the inbox.
    await pressFirst();
    await pressFirst();
    expect(lastShownIn(fake, chat).payload.text).toContain("Enter your M-Pesa PIN");
    expect(unhandledAtRequest).toEqual([1]);
    expect(await inboxOf(chat)).toEqual(Array.from({ length: 6 }, () => ({ status: "done", attempts: 1 })));
  });
});

describe("a known chat's input the menu fails on", () => {
  /**
   * An instance whose account reads fail while `failing.now` is set. When the bot reports the
   * failure (just before it apologises), what the inbox then holds of `failing.updateId` is counted.
   */
  const failingInstance = () => {
    const menuServices = createMenuServices(ctx, { planCacheMs: 0 });
    const failing = { now: false, inboxRows: [] as Promise<number>[], updateId: "" };
    const sink = new Writable({
      write(chunk, _encoding, done) {
        if (String(chunk).includes("telegram update failed"))
          failing.inboxRows.push(
            count(
              database.db,
              sql`select count(*)::int as n from chat_inbox where external_id = ${failing.updateId}`,
            ),
          );
        done();
      },
    });
    const instance = startInstance(ctx, fake, createLogger("error", sink), {
      ...menuServices,
      async account(id) {
        if (failing.now) throw new Error("the database went away");
        return menuServices.account(id);
      },
    });
    return { instance, failing };
  };
  const apologiesIn = (chat: number) =>
    shownIn(fake, chat).filter((call) => String(call.payload.text).startsWith("Sorry")).length;

  it("is stored before the apology, and kept for a retry; a redelivery of one answered gets none", async () => {
    const { instance, failing } = failingInstance();
    const { chat } = await customerChat();
    const answered = textUpdate(chat, "1");
    await instance.deliver(answered);
    await say(instance, chat, "menu");
    expect(instance.known.has("telegram", String(chat))).toBe(true);
    const step = await stepOf(chat);

    failing.now = true;
    failing.updateId = String(answered.update_id);
    expect(await instance.deliver(answered)).toBe(200);
    expect(apologiesIn(chat)).toBe(0);
    expect(await stepOf(chat)).toBe(step);

    failing.now = false;
    await say(instance, chat, "menu");
    failing.now = true;
    const failed = textUpdate(chat, "1");
    failing.updateId = String(failed.update_id);
    failing.inboxRows.length = 0;
    expect(await instance.deliver(failed)).toBe(200);
    expect(apologiesIn(chat)).toBe(1);
    // In the inbox before the bot told of the failure, and left failed there for the retry loop.
    expect(await Promise.all(failing.inboxRows)).toEqual([1]);
    const [row] = await queryRows<{ status: string }>(
      database.db,
      sql`select status from chat_inbox where external_id = ${failing.updateId}`,
    );
    expect(row?.status).toBe("failed");
  });

  it("is retried when it came after one stored later (the retry loop goes by arrival)", async () => {
    const { chat } = await customerChat();
    // The first instance knows the chat; its account read waits until told to go on.
    const menuServices = createMenuServices(ctx, { planCacheMs: 0 });
    let entered!: () => void;
    const reading = new Promise<void>((resolve) => {
      entered = resolve;
    });
    let goOn!: () => void;
    const held = new Promise<void>((resolve) => {
      goOn = resolve;
    });
    const slow = startInstance(ctx, fake, silent, {
      ...menuServices,
      async account(id) {
        entered();
        await held;
        return menuServices.account(id);
      },
    });
    await say(slow, chat, "menu");
    const { instance: failingOne, failing } = failingInstance();

    const earlier = textUpdate(chat, "1");
    const answering = postUpdate(slow.app, "/hooks/tg", earlier, SECRET, fake);
    await reading;
    clock.advance(1_000);
    // Sent a second later, to the other instance, which stores it at once and fails on it.
    failing.now = true;
    const later = textUpdate(chat, "1");
    failing.updateId = String(later.update_id);
    expect(await failingOne.deliver(later)).toBe(200);
    goOn();
    expect(await answering).toBe(200);

    const retried = await claimUnhandled(database.db, clock.now(), { channel: "telegram" });
    expect(retried.map((row) => row.payload.update_id)).toContain(later.update_id);
  });
});
