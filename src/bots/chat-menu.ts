import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { type Db, queryRows } from "../db/client.ts";
import { ts } from "../db/params.ts";
import type { ChatChannel } from "../db/schema/index.ts";
import { storableText } from "../lib/well-formed.ts";
import type { Logger } from "../logger.ts";
import { runMenu, type Screen } from "../menu/engine.ts";
import { subscriberScreens } from "../menu/screens.ts";
import { SessionCache } from "../menu/session-cache.ts";
import { SIGNUP_SCREENS } from "../menu/signup-screens.ts";
import type { Language, MenuChoice, MenuServices, MenuSettings } from "../menu/types.ts";
import { answerInPlace, type ChatOutgoing, sentNoLaterThan } from "./chat-outbox.ts";
import { createChatStepSaver, firstChatStep } from "./chat-save.ts";
import type { ChatContent } from "./chat-sender.ts";
import { type ChatState, createChatStateReader, linkVisitorChat, menuUserOf } from "./chat-state.ts";
import type { ChatWorker } from "./chat-worker.ts";

/**
 * The subscriber menu for chat channels (Telegram, WhatsApp): the same screens as USSD, replayed
 * from the inputs kept in `chat_sessions`, so any instance can answer any message and a restart
 * loses nothing. Knows nothing of a chat platform: adapters turn their updates into `ChatInput`
 * and show the returned `ChatView` their own way.
 */

/** Words that start over at the main menu, in both languages (compared case-insensitively). */
export const HOME_WORDS: ReadonlySet<string> = new Set(["menu", "hi", "start", "/start", "habari", "mwanzo"]);

/** Beyond these a conversation is not a person choosing from a menu: it starts over. */
const MAX_INPUTS = 60;
const MAX_TEXT = 160;

export type ChatInput =
  /** What the person typed: a number, an amount, or a home word. */
  | { kind: "text"; text: string }
  /** A button: the choice's key and the step of the screen it was shown on. */
  | { kind: "option"; key: string; step: number }
  /**
   * Shows the current screen again without answering it (e.g. once a visitor shared their phone, the
   * payment prompt they were on, now naming that phone). An expired conversation shows the main menu.
   */
  | { kind: "refresh" };

export interface ChatRequest {
  channel: ChatChannel;
  /** The chat identity on its channel (Telegram: the user id). */
  chatId: string;
  /**
   * The phone this chat speaks for when the channel knows it (WhatsApp: the sender's own number;
   * null: none it may use). Absent: the chat's link to a customer, else the phone the chat shared as
   * a visitor (`chat-state.ts`).
   */
  phone?: string | null;
  /** The channel knows the person but not their number (a WhatsApp username): `phone` is null. */
  phoneHidden?: boolean;
  input: ChatInput;
  /**
   * When the person sent the input, by the platform's own clock (WhatsApp's 24-hour window runs from
   * it). Absent: when it is handled. A time after that is taken as that.
   */
  sentAt?: Date;
  /**
   * The messages that answer this input, made by the channel from the reply: they are written to the
   * outbox with the chat's new place in the menu (one statement), so an answer is sent exactly when
   * the input counted. Absent: the caller shows the reply itself (tests of the menu alone).
   */
  answer?: (reply: ChatReply) => ChatContent[];
  /**
   * The chat_inbox row this input was stored in: marked handled by the same statement that saves the
   * input, so it can never be handled again once it counted (and costs no statement of its own).
   */
  inboxId?: number;
  /**
   * The chat's state, read by the statement that stored the input (chat-inbox.ts), when nothing has
   * changed it since; absent: read now.
   */
  state?: ChatState;
}

export interface ChatView {
  /** The text of the screen, without its choices. */
  lines: string[];
  /** What may be answered: adapters show them as buttons or numbered lines. */
  options: MenuChoice[];
  /** The conversation closed (an outcome): the next message starts at the main menu. */
  end: boolean;
  /** The chat's step after this answer: a button carries it, and only the newest step is accepted. */
  step: number;
  screen: string;
  language: Language;
  /** The chat speaks for a customer (else: the visitor's menu). */
  customer?: boolean;
  /**
   * A visitor (no phone) reached a screen that needs their own number: to ask M-Pesa to charge it
   * (`pay`), or to find what was bought with it (`find`). The adapter should ask for the person's
   * own number first, then send `refresh`. Absent when no phone is needed.
   */
  needsPhone?: "pay" | "find";
}

export type ChatReply =
  | { kind: "view"; view: ChatView }
  /** A button from an older screen, an expired conversation, or a lost race: nothing changed. */
  | { kind: "stale"; language: Language };

export interface ChatMenuDeps {
  db: Db;
  services: MenuServices;
  settings: MenuSettings;
  logger: Logger;
  clock: Clock;
  /** A conversation idle this long starts over at the main menu (default 10 minutes). */
  idleMs?: number;
  screens?: Record<string, Screen>;
  /** Only a speed-up (see SessionCache): a miss reads afresh. */
  cache?: SessionCache;
  /** Screens that prompt a payment from the user's phone (default `PAYMENT_SCREENS`). */
  paymentScreens?: ReadonlySet<string>;
  /** Told after answers were queued (the chat delivery worker sends them at once). */
  onQueued?: () => void;
  /**
   * Sends answers as soon as they are saved (the chat delivery worker): they are written leased to
   * it, so no pass claims them first. Absent (the Cloudflare Worker, which sends nothing), answers
   * wait for a pass of the Node service's worker.
   */
  sendAtOnce?: Pick<ChatWorker, "deliver" | "leaseMs">;
}

/**
 * The screens that need the person's own phone: those that name the phone M-Pesa will charge, and
 * the sign-up (an account is opened for a phone).
 */
export const PAYMENT_SCREENS: ReadonlySet<string> = new Set([
  "voucherConfirm",
  "payConfirm",
  "planConfirm",
  ...SIGNUP_SCREENS,
]);

/** The screens that show what was bought with the person's own phone (their voucher codes). */
export const PHONE_LOOKUP_SCREENS: ReadonlySet<string> = new Set(["myVouchers"]);

/** Refused to a chat without a phone: an STK push needs one, and "" must never reach M-Pesa. */
const PHONE_REQUIRED = "phone_required";

function requirePhone(services: MenuServices): MenuServices {
  return {
    ...services,
    requestPayment: (user, session, request) =>
      user.phone === "" && request.payerPhone === undefined
        ? Promise.resolve({ ok: false, reason: PHONE_REQUIRED, message: "a phone number is needed to pay" })
        : services.requestPayment(user, session, request),
  };
}

export interface ChatMenu {
  handle(request: ChatRequest): Promise<ChatReply>;
}

/** Random bytes for session keys, drawn from the system a thousand keys at a time, not one by one. */
const KEY_BYTES = 9;
let keyPool = Buffer.alloc(0);
let keyOffset = 0;
const newSessionKey = () => {
  if (keyOffset + KEY_BYTES > keyPool.length) {
    keyPool = randomBytes(KEY_BYTES * 1024);
    keyOffset = 0;
  }
  keyOffset += KEY_BYTES;
  return keyPool.toString("base64url", keyOffset - KEY_BYTES, keyOffset);
};

export function createChatMenu(deps: ChatMenuDeps): ChatMenu {
  const idleMs = deps.idleMs ?? 10 * 60_000;
  const screens = deps.screens ?? subscriberScreens;
  const cache = deps.cache ?? new SessionCache();
  const paymentScreens = deps.paymentScreens ?? PAYMENT_SCREENS;
  const phoneNeeded = (screen: string): Pick<ChatView, "needsPhone"> =>
    paymentScreens.has(screen)
      ? { needsPhone: "pay" }
      : PHONE_LOOKUP_SCREENS.has(screen)
        ? { needsPhone: "find" }
        : {};
  // A visitor who answers a payment prompt before sharing a number gets a refusal, not a push to "".
  const services = requirePhone(deps.services);
  // Messages of many chats handled at the same time are read, and saved, by one statement each.
  const readState = createChatStateReader(deps.db);
  const saveStep = createChatStepSaver(deps.db);

  return {
    async handle({
      channel,
      chatId,
      phone: requestPhone,
      phoneHidden,
      input,
      sentAt,
      answer,
      inboxId,
      state: readWithInput,
    }) {
      const answersTo = (reply: ChatReply): ChatOutgoing[] =>
        (answer?.(reply) ?? []).map((content) => ({
          channel,
          to: chatId,
          language: reply.kind === "view" ? reply.view.language : reply.language,
          content,
        }));
      const now = deps.clock.now();
      const inboundAt = sentNoLaterThan(sentAt, now);
      // Nothing changed but the chat's newest message: only the answer saying so is queued.
      const queueStale = async (language: Language): Promise<ChatReply> => {
        const reply: ChatReply = { kind: "stale", language };
        const messages = answersTo(reply);
        await answerInPlace(deps.db, deps.clock.now(), { channel, chatId, sentAt: inboundAt }, messages);
        if (messages.length > 0) deps.onQueued?.();
        return reply;
      };
      const state = readWithInput ?? (await readState({ channel, chatId, phone: requestPhone }));
      const row = state.session;
      const phone = state.phone;
      const step = row?.step ?? 0;
      const expired = !row || now.getTime() - row.lastActivityAt.getTime() > idleMs;
      // A customer's language is theirs, not the chat's (whose column stays null for a customer).
      const staleLanguage =
        (state.customer && state.menuSession?.visitor !== true ? state.customer.language : row?.language) ??
        "en";
      // A button names a choice on one screen: after another input it would mean something else, so
      // it changes nothing. Once the conversation it belongs to has expired, it is not applied
      // either, but the person gets the main menu (below), as a typed word would: a button left on
      // an old screen is the only thing in sight to press.
      if (input.kind === "option" && !expired && input.step !== step) return queueStale(staleLanguage);

      const refresh = input.kind === "refresh";
      // What PostgreSQL's JSON cannot store (U+0000, half a surrogate pair) means nothing to a menu.
      const typed =
        input.kind === "text" ? storableText(input.text).trim() : input.kind === "option" ? input.key : "";
      const goHome =
        expired ||
        (input.kind === "text" && HOME_WORDS.has(typed.toLowerCase())) ||
        typed.length > MAX_TEXT ||
        (!refresh && (row?.inputs.length ?? 0) >= MAX_INPUTS);
      // An idle chat's typed "2" was meant for a screen it no longer sees: it gets the main menu instead.
      const continuing = !goHome && row !== null;
      const sessionKey = continuing ? row.sessionKey : newSessionKey();
      const inputs = continuing ? (refresh ? row.inputs : [...row.inputs, typed]) : [];
      // The lists the session was shown keep their numbers (see plansOf): a confirm pressed after the
      // list changed acts on the plan and price it showed, or on none.
      const plans = (continuing ? state.menuSession?.plans : undefined) ?? {};
      const session = { id: `${channel}:${sessionKey}`, channel, plans };

      // A visitor's shared phone that became a customer's (a sign-up from this chat) links the chat.
      if (requestPhone === undefined && !state.linked && state.customer && goHome) {
        await linkVisitorChat(deps.db, channel, chatId, state.customer.id);
        state.linked = true;
      }
      const { user, recorded } = menuUserOf(state, continuing);
      // A phone the channel gives (WhatsApp's sender) cannot be swapped for a shared one.
      if (requestPhone !== undefined) user.phoneFromChannel = true;
      if (phoneHidden) user.phoneHidden = true;
      // A visitor's language lives with the chat (a customer's with the customer).
      if (!user.customer && row?.language) user.language = row.language;
      let languageSet = false;
      const view = await runMenu(
        {
          user,
          session,
          inputs,
          recorded,
          cache,
          onError: (error, at) =>
            deps.logger.error({ err: error, channel, step: at }, "chat menu action failed"),
          onAct: async () => {
            // What this action leads to (a receipt, a voucher code) comes back to this chat.
            if (phone !== null && !routedHereFor(state.replyRoute, channel, chatId, now))
              await routeRepliesToChat(deps.db, phone, channel, chatId, now);
          },
        },
        screens,
        {
          ...services,
          setLanguage: (...args) => {
            languageSet = true;
            return services.setLanguage(...args);
          },
        },
        deps.settings,
      );
      let language: Language = user.language;
      // The answer to a language change, and what follows it, is in the language chosen.
      if (languageSet)
        language = await languageAfter(deps.db, session.id, user.customer?.id ?? null, language);

      // A closed conversation is not replayed again: the next message starts at the main menu.
      const stored = view.end ? { sessionKey: newSessionKey(), inputs: [] } : { sessionKey, inputs };
      const nextStep = row ? step + 1 : firstChatStep(now);
      const reply: ChatReply = {
        kind: "view",
        view: {
          lines: view.head ?? view.lines,
          options: view.choices ?? [],
          end: view.end,
          step: nextStep,
          screen: view.screen,
          language,
          ...(phone === null && !view.end ? phoneNeeded(view.screen) : {}),
          customer: user.customer !== null,
        },
      };
      const messages = answersTo(reply);
      // From now, not from when the message came: the menu may have waited on M-Pesa or the database.
      const leaseUntil = deps.sendAtOnce
        ? new Date(deps.clock.now().getTime() + deps.sendAtOnce.leaseMs)
        : null;
      const { saved, leased } = await saveStep({
        channel,
        chatId,
        expectedStep: row ? step : null,
        step: nextStep,
        ...stored,
        language: user.customer ? (row?.language ?? null) : language,
        at: now,
        inboundAt,
        messages,
        inboxId: inboxId ?? null,
        leaseUntil,
      });
      // Another message of the same chat was stored first: this one's answer is already out of date.
      if (!saved) return queueStale(language);
      if (leased.length > 0 && leaseUntil) deps.sendAtOnce?.deliver(leased, leaseUntil);
      // Answers waiting behind an earlier message of the chat go out with a pass.
      if (leased.length < messages.length) deps.onQueued?.();
      return reply;
    },
  };
}

/** How long a chat that confirmed an action gets its results (rather than SMS). */
const REPLY_ROUTE_MS = 60 * 60_000;

/**
 * The phone's results already come to this chat for most of that time: a person confirming one
 * thing after another costs no write each time (the route still lasts half an hour at least).
 */
function routedHereFor(route: ChatState["replyRoute"], channel: ChatChannel, chatId: string, now: Date) {
  return (
    route !== null &&
    route.channel === channel &&
    route.chatId === chatId &&
    route.until.getTime() - now.getTime() > REPLY_ROUTE_MS / 2
  );
}

async function routeRepliesToChat(db: Db, phone: string, channel: ChatChannel, chatId: string, now: Date) {
  await db.execute(
    sql`insert into chat_reply_routes (phone, channel, chat_id, until)
        values (${phone}, ${channel}, ${chatId}, ${ts(new Date(now.getTime() + REPLY_ROUTE_MS))})
        on conflict (phone) do update set channel = excluded.channel, chat_id = excluded.chat_id,
          until = excluded.until`,
  );
}

/** The language a language change stored: the customer's, or a visitor's menu session's. */
async function languageAfter(
  db: Db,
  sessionId: string,
  customerId: number | null,
  fallback: Language,
): Promise<Language> {
  const rows = await queryRows<{ language: Language | null }>(
    db,
    customerId !== null
      ? sql`select language from customers where id = ${customerId}`
      : sql`select language from channel_sessions where id = ${sessionId}`,
  );
  return rows[0]?.language ?? fallback;
}
