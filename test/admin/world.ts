import { and, eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import { afterAll, beforeAll } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import {
  type AdminNetwork,
  createAdminBot,
  createAdminTelegramRoutes,
  ensureOwner,
} from "../../src/bots/admin/index.ts";
import { ADMIN_CHANNEL } from "../../src/bots/admin/queued-api.ts";
import { deliverDueChats } from "../../src/bots/chat-delivery.ts";
import {
  commandEntities,
  type FakeDocument,
  type FakeTelegram,
  type SentCall,
  startFakeTelegram,
} from "../../src/bots/telegram/fake-api.ts";
import { createTelegramSender } from "../../src/bots/telegram/sender.ts";
import type { FakeClock } from "../../src/clock.ts";
import type { Db } from "../../src/db/client.ts";
import { type AdminRole, auditLog } from "../../src/db/schema/index.ts";
import type { SecretBox } from "../../src/lib/secret-box.ts";
import { postUpdate } from "../bots/world.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { silent } from "../ussd/world.ts";

/** The admin bot mounted as the app mounts it, talking to a fake Bot API of its own. */

export const ADMIN_SECRET = "tg-admin-webhook-secret-0123456789";
export const OWNER = 5_000_001;
/** A group configured as an admin chat (`TELEGRAM_ADMIN_CHATS`). */
export const ADMIN_GROUP = -1_001_234_567;
/** A group that is not. */
export const OTHER_GROUP = -1_009_999_999;

export async function startAdminWorld(
  ctx: BillingContext,
  options: {
    network?: AdminNetwork;
    /** Seals router passwords typed in the chat (the `box` dep). */
    box?: SecretBox;
    /** Updates stored in chat_inbox as the app stores them (to check what a stored copy holds). */
    storeUpdates?: boolean;
    /** `SERVED_COUNTRIES` (the `servedCountries` dep). */
    servedCountries?: readonly string[];
    /** `HOTSPOT_LOGIN_URL` (the `hotspotLoginUrl` dep). */
    hotspotLoginUrl?: string;
  } = {},
) {
  const fake = await startFakeTelegram({ token: "777000:ADMIN-fake-token", username: "tandao_admin_bot" });
  await ensureOwner(ctx, OWNER);
  const bot = createAdminBot({
    token: fake.token,
    ctx,
    logger: silent,
    apiRoot: fake.apiRoot,
    botInfo: fake.botInfo,
    adminChatIds: [ADMIN_GROUP],
    ownerTelegramId: OWNER,
    ispName: "Kibera Net",
    ...(options.network ? { network: options.network } : {}),
    ...(options.box ? { box: options.box } : {}),
    ...(options.servedCountries ? { servedCountries: options.servedCountries } : {}),
    ...(options.hotspotLoginUrl ? { hotspotLoginUrl: options.hotspotLoginUrl } : {}),
  });
  const app = new Hono();
  const inbox = options.storeUpdates
    ? { inbox: { db: ctx.db, clock: ctx.clock, channel: ADMIN_CHANNEL } }
    : {};
  app.route("/hooks/tg-admin", createAdminTelegramRoutes({ bot, secretToken: ADMIN_SECRET, ...inbox }));
  const sender = createTelegramSender({ token: fake.token, apiRoot: fake.apiRoot, channel: ADMIN_CHANNEL });

  /** Sends what the bot queued on `telegram_admin`, as the admin chat worker does, until nothing is due. */
  async function sendQueued() {
    for (;;) {
      const counts = await deliverDueChats({
        db: ctx.db,
        clock: ctx.clock,
        senders: [sender],
        isp: "Kibera Net",
      });
      if (counts.sent + counts.retried + counts.dead + counts.toSms === 0) return;
    }
  }

  /** Delivers one update as Telegram would, then sends the answers it queued. */
  async function deliver(update: Record<string, unknown>, secret: string | null = ADMIN_SECRET) {
    const status = await postUpdate(app, "/hooks/tg-admin", update, secret, fake);
    await sendQueued();
    return status;
  }

  /** `/command args` typed by `user` in a private chat with the bot, or in `chat` (a group). */
  const say = (user: number, text: string, chat?: number) => deliver(textUpdate(user, text, chat));

  /** `user` presses the button starting with `label` on the newest message with buttons in `chat`. */
  async function press(user: number, label: string, chat = user, message = lastMenuIn(fake, chat)) {
    return deliver(pressUpdate(fake, user, chat, message.messageId!, button(message, label)));
  }

  return { fake, bot, deliver, say, press, sendQueued, close: () => fake.close() };
}

export type AdminWorld = Awaited<ReturnType<typeof startAdminWorld>>;

/** Someone the owner adds with `/admin_add` before the file's tests run. */
export interface StaffMember {
  id: number;
  role: Exclude<AdminRole, "owner">;
  name: string;
}

/**
 * The admin world of one test file, with the database and billing context it runs on (and the
 * database's URL on PostgreSQL, for a session of a test's own).
 */
export type AdminFileWorld = AdminWorld & { db: Db; ctx: BillingContext; url?: string };

/**
 * Starts the admin world on a database of its own before the file's tests (the owner adding
 * `staff` in order) and closes both after them.
 */
export function adminWorldForFile(clock: FakeClock, staff: readonly StaffMember[] = []): AdminFileWorld {
  // Filled in by beforeAll: the file's hooks and tests, the only readers, all run after it.
  const world = {} as AdminFileWorld;
  let database: TestDatabase | undefined;
  let started: AdminWorld | undefined;
  beforeAll(async () => {
    database = await createTestDatabase();
    const { ctx } = billingContext(database.db, clock);
    started = await startAdminWorld(ctx);
    Object.assign(world, started, { db: database.db, ctx, url: database.url });
    for (const { id, role, name } of staff) await world.say(OWNER, `/admin_add ${id} ${role} ${name}`);
  });
  afterAll(async () => {
    await started?.close();
    await database?.close();
  });
  return world;
}

let updateId = 50_000;
const now = () => Math.floor(Date.now() / 1000);
const user = (id: number) => ({ id, is_bot: false, first_name: `User${id}` });
const chatOf = (chat: number) =>
  chat < 0
    ? { id: chat, type: "supergroup", title: "Staff" }
    : { id: chat, type: "private", first_name: `User${chat}` };

export function textUpdate(userId: number, text: string, chat = userId) {
  return {
    update_id: ++updateId,
    message: {
      message_id: updateId,
      date: now(),
      chat: chatOf(chat),
      from: user(userId),
      text,
      ...commandEntities(text),
    },
  };
}

/** `user` sends `document` (with `caption`) in `chat`: by default their private chat with the bot. */
export function documentUpdate(userId: number, document: FakeDocument, caption?: string, chat = userId) {
  const entities = caption ? commandEntities(caption).entities : undefined;
  return {
    update_id: ++updateId,
    message: {
      message_id: updateId,
      date: now(),
      chat: chatOf(chat),
      from: user(userId),
      document,
      ...(caption ? { caption } : {}),
      ...(entities ? { caption_entities: entities } : {}),
    },
  };
}

export function pressUpdate(
  fake: FakeTelegram,
  userId: number,
  chat: number,
  messageId: number,
  data: string,
) {
  const message = fake.message(messageId);
  if (!message) throw new Error(`no message ${messageId}`);
  return {
    update_id: ++updateId,
    callback_query: {
      id: `cb${updateId}`,
      from: user(userId),
      chat_instance: "ci",
      message: {
        ...message,
        chat: chatOf(chat),
        from: { id: fake.botInfo.id, is_bot: true, first_name: "Admin" },
      },
      data,
    },
  };
}

interface Button {
  text: string;
  callback_data: string;
}

export function buttonsOf(call: SentCall | undefined): Button[] {
  const markup = call?.payload.reply_markup as { inline_keyboard?: Button[][] } | undefined;
  return markup?.inline_keyboard?.flat() ?? [];
}

export function button(call: SentCall | undefined, prefix: string): string {
  const found = buttonsOf(call).find((b) => b.text.includes(prefix));
  if (!found) throw new Error(`no button "${prefix}" in ${JSON.stringify(call?.payload)}`);
  return found.callback_data;
}

export function shownIn(fake: FakeTelegram, chat: number): SentCall[] {
  return fake.calls.filter(
    (c) =>
      (c.method === "sendMessage" || c.method === "editMessageText") && Number(c.payload.chat_id) === chat,
  );
}

/** The newest text the bot showed in `chat`. */
export function lastText(fake: FakeTelegram, chat: number): string {
  const last = shownIn(fake, chat).at(-1);
  if (!last) throw new Error(`nothing shown in ${chat}`);
  return String(last.payload.text);
}

export function lastMenuIn(fake: FakeTelegram, chat: number): SentCall {
  const last = shownIn(fake, chat)
    .filter((c) => c.method === "sendMessage" && buttonsOf(c).length > 0)
    .at(-1);
  if (!last) throw new Error(`no buttons in ${chat}`);
  return last;
}

/** The toast of the newest button answer. */
export function lastToast(fake: FakeTelegram): string | undefined {
  const last = fake.callsOf("answerCallbackQuery").at(-1);
  return last?.payload.text as string | undefined;
}

export async function auditRows(db: Db, action: string, actorId?: string) {
  return db
    .select()
    .from(auditLog)
    .where(and(eq(auditLog.action, action), actorId ? eq(auditLog.actorId, actorId) : sql`true`));
}

export { startFakeTelegram };
