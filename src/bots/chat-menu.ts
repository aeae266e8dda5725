import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import { type Db, queryRows } from "../db/client.ts";
import { ts } from "../db/params.ts";
import type { ChatChannel } from "../db/schema/index.ts";
import { storableText } from "../lib/well-formed.ts";
import { runMenu } from "../menu/engine.ts";
import { subscriberScreens } from "../menu/screens.ts";
import { SessionCache } from "../menu/session-cache.ts";
import { SIGNUP_SCREENS } from "../menu/signup-screens.ts";
import type { Language } from "../menu/types.ts";
import { MUST_STORE, readOnly, requirePhone } from "./chat-menu-services.ts";
import {
  type ChatMenu,
  type ChatMenuDeps,
  type ChatOutcome,
  type ChatReply,
  type ChatRequest,
  type ChatView,
  HOME_WORDS,
  type UnstoredMessage,
} from "./chat-menu-types.ts";
import { type ChatOutgoing, enqueueChat } from "./chat-outbox.ts";
import { type ChatStep, createChatStepSaver, firstChatStep, type SavedStep } from "./chat-save.ts";
import { createUnstoredStepSaver, type UnstoredOutcome } from "./chat-save-unstored.ts";
import { type ChatState, createChatStateReader, linkVisitorChat, menuUserOf } from "./chat-state.ts";

export type {
  ChatInput,
  ChatMenu,
  ChatMenuDeps,
  ChatOutcome,
  ChatReply,
  ChatRequest,
  ChatView,
  UnstoredMessage,
} from "./chat-menu-types.ts";
export { HOME_WORDS } from "./chat-menu-types.ts";

/**
 * The subscriber menu for chat channels (Telegram, WhatsApp): the same screens as USSD, replayed
 * from the inputs kept in `chat_sessions`, so any instance can answer any message and a restart
 * loses nothing. Knows nothing of a chat platform: adapters turn their updates into `ChatInput`
 * and show the returned `ChatView` their own way.
 */

/** Beyond these a conversation is not a person choosing from a menu: it starts over. */
const MAX_INPUTS = 60;
const MAX_TEXT = 160;

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

/** What the menu makes of a message before saving it. */
type Answer =
  | { kind: "stale"; language: Language; messages: ChatOutgoing[] }
  | {
      kind: "step";
      reply: Extract<ChatReply, { kind: "view" }>;
      saving: ChatStep;
      /** The answer saying it came too late, should another message of the chat be saved first. */
      stale: () => ChatOutgoing[];
      /** The chat's state once saved, when nothing but the save changed it (see chat-known.ts). */
      after?: ChatState;
    };

/**
 * Thrown when answering a message not stored yet would link the chat (a visitor's shared phone that
 * became a customer's): it is stored first, as for `MUST_STORE`, but says nothing of the screen.
 */
const MUST_LINK = new Error("this message links its chat: it must be stored before it is answered");

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

  const saveUnstored = createUnstoredStepSaver(deps.db);
  // Only what reads: a message answered before it is stored must not act on anything.
  const readingOnly = readOnly(services);

  /**
   * The answer to `request` from `state`, and the step that saves it. `acting` false (the message
   * is not stored yet): whatever would act or write throws `MustStore` first.
   */
  async function answer(request: ChatRequest, state: ChatState, acting: boolean): Promise<Answer> {
    const { channel, chatId, phone: requestPhone, phoneHidden, input, sentAt } = request;
    const answersTo = (reply: ChatReply): ChatOutgoing[] =>
      (request.answer?.(reply) ?? []).map((content) => ({
        channel,
        to: chatId,
        language: reply.kind === "view" ? reply.view.language : reply.language,
        content,
      }));
    const staleIn = (language: Language) => answersTo({ kind: "stale", language });
    const now = deps.clock.now();
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
    if (input.kind === "option" && !expired && input.step !== step) {
      return { kind: "stale", language: staleLanguage, messages: staleIn(staleLanguage) };
    }

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
    const session = { id: `${channel}:${sessionKey}`, channel };

    // A visitor's shared phone that became a customer's (a sign-up from this chat) links the chat.
    let linked = state.linked;
    if (requestPhone === undefined && !linked && state.customer && goHome) {
      if (!acting) throw MUST_LINK;
      await linkVisitorChat(deps.db, channel, chatId, state.customer.id);
      linked = true;
    }
    const { user, recorded } = menuUserOf(state, continuing);
    // A phone the channel gives (WhatsApp's sender) cannot be swapped for a shared one.
    if (requestPhone !== undefined) user.phoneFromChannel = true;
    if (phoneHidden) user.phoneHidden = true;
    // A visitor's language lives with the chat (a customer's with the customer).
    if (!user.customer && row?.language) user.language = row.language;
    let languageSet = false;
    const given = acting ? services : readingOnly;
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
          if (!acting) throw MUST_STORE;
          // What this action leads to (a receipt, a voucher code) comes back to this chat.
          if (phone !== null && !routedHereFor(state.replyRoute, channel, chatId, now))
            await routeRepliesToChat(deps.db, phone, channel, chatId, now);
        },
      },
      screens,
      {
        ...given,
        setLanguage: (...args) => {
          languageSet = true;
          return given.setLanguage(...args);
        },
      },
      deps.settings,
    );
    let language: Language = user.language;
    // The answer to a language change, and what follows it, is in the language chosen.
    if (languageSet) language = await languageAfter(deps.db, session.id, user.customer?.id ?? null, language);

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
    const savedLanguage = user.customer ? (row?.language ?? null) : language;
    // From now, not from when the message came: the menu may have waited on M-Pesa or the database.
    const leaseUntil = deps.sendAtOnce
      ? new Date(deps.clock.now().getTime() + deps.sendAtOnce.leaseMs)
      : null;
    const saving: ChatStep = {
      channel,
      chatId,
      expectedStep: row ? step : null,
      step: nextStep,
      ...stored,
      language: savedLanguage,
      at: now,
      inboundAt: sentAt !== undefined && sentAt < now ? sentAt : now,
      messages: answersTo(reply),
      inboxId: request.inboxId ?? null,
      leaseUntil,
    };
    // What the chat's state reads once this is saved, if nothing else wrote to it. An action may
    // have (a recorded outcome, a language): the version it carries then differs from the database's,
    // and the chat's next message reads afresh (chat-save-unstored.ts).
    const sameKey = stored.sessionKey === row?.sessionKey;
    const after: ChatState | undefined =
      !state.version || requestPhone !== undefined
        ? undefined
        : {
            ...state,
            linked,
            session: { ...stored, language: savedLanguage, step: nextStep, lastActivityAt: now },
            menuSession: sameKey ? state.menuSession : null,
            version: {
              current: sameKey ? state.version.current : state.version.freshSession,
              freshSession: state.version.freshSession,
            },
          };
    return { kind: "step", reply, saving, stale: () => staleIn(language), ...(after ? { after } : {}) };
  }

  /** Writes a stale answer (nothing else changed). */
  const queueStale = async (messages: ChatOutgoing[], language: Language): Promise<ChatReply> => {
    if (messages.length > 0) {
      await enqueueChat(deps.db, deps.clock.now(), messages);
      deps.onQueued?.();
    }
    return { kind: "stale", language };
  };

  /** Sends what was written leased to this process, and tells the worker of what waits. */
  const dispatch = (step: ChatStep, leased: SavedStep["leased"]) => {
    if (leased.length > 0 && step.leaseUntil) deps.sendAtOnce?.deliver(leased, step.leaseUntil);
    // Answers waiting behind an earlier message of the chat go out with a pass.
    if (leased.length < step.messages.length) deps.onQueued?.();
  };

  /** A message stored before it was answered (the usual way). */
  async function answerStored(request: ChatRequest): Promise<ChatReply> {
    const { channel, chatId } = request;
    const state = request.state ?? (await readState({ channel, chatId, phone: request.phone }));
    const made = await answer(request, state, true);
    if (made.kind === "stale") return queueStale(made.messages, made.language);
    const { saved, leased } = await saveStep(made.saving);
    // Another message of the same chat was stored first: this one's answer is already out of date.
    if (!saved) return queueStale(made.stale(), made.reply.view.language);
    if (made.after) deps.known?.remember(channel, chatId, made.after, made.reply.view.screen);
    dispatch(made.saving, leased);
    return made.reply;
  }

  /**
   * A message not stored yet, of a chat whose state this process kept: answered from that state if
   * the menu only reads, and stored with its answer by one statement; otherwise stored first.
   */
  async function answerUnstored(request: ChatRequest, unstored: UnstoredMessage): Promise<ChatOutcome> {
    const { channel, chatId } = request;
    const storeFirst = async (): Promise<ChatOutcome> => {
      const row = await unstored.store();
      if (!row) {
        unstored.inbox = "settled";
        return { kind: "repeated" };
      }
      unstored.inbox = { id: row.id };
      return answerStored({ ...request, state: row.state, inboxId: row.id });
    };
    /**
     * Whatever failed, the message is stored before the failure is told (the bot apologises, and the
     * route keeps the row for a retry): unless it was in the inbox already, a redelivery of a message
     * answered, which has nothing to apologise for.
     */
    const storeThenFail = async (error: unknown): Promise<ChatOutcome> => {
      const row = await unstored.store();
      if (!row) {
        unstored.inbox = "settled";
        return { kind: "repeated" };
      }
      unstored.inbox = { id: row.id };
      throw error;
    };
    let made: Answer;
    try {
      made = await answer(request, unstored.known.state, false);
    } catch (error) {
      // Its screen acts: the chat's next input there is stored as it comes (KnownChats.take).
      if (error === MUST_STORE) deps.known?.actsOn(unstored.known.screen);
      return error === MUST_STORE || error === MUST_LINK ? storeFirst() : storeThenFail(error);
    }
    if (made.kind === "stale" || !unstored.known.state.version) return storeFirst();
    let outcome: UnstoredOutcome;
    try {
      outcome = await saveUnstored({
        step: made.saving,
        record: unstored.record,
        version: unstored.known.state.version.current,
      });
    } catch (error) {
      return storeThenFail(error);
    }
    switch (outcome.kind) {
      case "repeated":
        unstored.inbox = "settled";
        return outcome;
      case "overtaken":
        unstored.inbox = "settled";
        return queueStale(made.stale(), made.reply.view.language);
      case "saved":
        unstored.inbox = "settled";
        if (made.after) deps.known?.remember(channel, chatId, made.after, made.reply.view.screen);
        dispatch(made.saving, outcome.saved.leased);
        return made.reply;
      case "stored":
        // Something changed the chat since: answered afresh, as a message stored the usual way.
        unstored.inbox = { id: outcome.inboxId };
        return answerStored({ ...request, state: outcome.state, inboxId: outcome.inboxId });
    }
  }

  return {
    handle: (request) =>
      request.unstored ? answerUnstored(request, request.unstored) : answerStored(request),
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
