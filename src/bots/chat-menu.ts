import { randomBytes } from "node:crypto";
import { and, eq, sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { type Db, queryRows } from "../db/client.ts";
import { type ChatChannel, chatSessions } from "../db/schema/index.ts";
import type { Logger } from "../logger.ts";
import { runMenu, type Screen } from "../menu/engine.ts";
import { subscriberScreens } from "../menu/screens.ts";
import { loadMenuUser } from "../menu/services.ts";
import { SessionCache } from "../menu/session-cache.ts";
import { SIGNUP_SCREENS } from "../menu/signup-screens.ts";
import type { Language, MenuChoice, MenuServices, MenuSettings } from "../menu/types.ts";

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
  /** The customer's phone when the chat is linked; null: a visitor (the non-customer menu). */
  phone: string | null;
  input: ChatInput;
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
  /**
   * A visitor (no phone) reached a screen that would ask M-Pesa to charge a phone: the adapter should
   * ask for the person's own number first, then send `refresh`. Absent when no phone is needed.
   */
  needsPhone?: boolean;
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

/** Refused to a chat without a phone: an STK push needs one, and "" must never reach M-Pesa. */
const PHONE_REQUIRED = "phone_required";

function requirePhone(services: MenuServices): MenuServices {
  return {
    ...services,
    requestPayment: (user, session, request) =>
      user.phone === ""
        ? Promise.resolve({ ok: false, reason: PHONE_REQUIRED, message: "a phone number is needed to pay" })
        : services.requestPayment(user, session, request),
  };
}

export interface ChatMenu {
  handle(request: ChatRequest): Promise<ChatReply>;
}

const newSessionKey = () => randomBytes(9).toString("base64url");

export function createChatMenu(deps: ChatMenuDeps): ChatMenu {
  const idleMs = deps.idleMs ?? 10 * 60_000;
  const screens = deps.screens ?? subscriberScreens;
  const cache = deps.cache ?? new SessionCache();
  const paymentScreens = deps.paymentScreens ?? PAYMENT_SCREENS;
  // A visitor who answers a payment prompt before sharing a number gets a refusal, not a push to "".
  const services = requirePhone(deps.services);

  return {
    async handle({ channel, chatId, phone, input }) {
      const now = deps.clock.now();
      const [row] = await deps.db
        .select()
        .from(chatSessions)
        .where(and(eq(chatSessions.channel, channel), eq(chatSessions.chatId, chatId)));
      const step = row?.step ?? 0;
      const expired = !row || now.getTime() - row.lastActivityAt.getTime() > idleMs;
      const staleLanguage = row?.language ?? "en";
      // A button names a choice on one screen: after another input, or once the conversation it belongs
      // to has expired, it would mean something else, so it changes nothing.
      if (input.kind === "option" && (expired || input.step !== step))
        return { kind: "stale", language: staleLanguage };

      const refresh = input.kind === "refresh";
      const typed = input.kind === "text" ? input.text.trim() : input.kind === "option" ? input.key : "";
      const goHome =
        expired ||
        (input.kind === "text" && HOME_WORDS.has(typed.toLowerCase())) ||
        typed.length > MAX_TEXT ||
        (!refresh && (row?.inputs.length ?? 0) >= MAX_INPUTS);
      // An idle chat's typed "2" was meant for a screen it no longer sees: it gets the main menu instead.
      const sessionKey = goHome || !row ? newSessionKey() : row.sessionKey;
      const inputs = goHome || !row ? [] : refresh ? row.inputs : [...row.inputs, typed];
      const session = { id: `${channel}:${sessionKey}`, channel };

      const { user, recorded } = await loadMenuUser(deps.db, phone ?? "", session.id);
      // A visitor's language lives with the chat (a customer's with the customer).
      if (!user.customer && row?.language) user.language = row.language;
      let acted = false;
      const view = await runMenu(
        {
          user,
          session,
          inputs,
          recorded,
          cache,
          onError: (error, at) =>
            deps.logger.error({ err: error, channel, step: at }, "chat menu action failed"),
          onAct: () => {
            acted = true;
          },
        },
        screens,
        services,
        deps.settings,
      );
      let language: Language = user.language;
      if (acted) language = await languageAfter(deps.db, session.id, user.customer?.id ?? null, language);

      // A closed conversation is not replayed again: the next message starts at the main menu.
      const stored = view.end ? { sessionKey: newSessionKey(), inputs: [] } : { sessionKey, inputs };
      const saved = await save(deps.db, {
        channel,
        chatId,
        expectedStep: row ? step : null,
        ...stored,
        language: user.customer ? (row?.language ?? null) : language,
        at: now,
      });
      // Another message of the same chat was stored first: this one's answer is already out of date.
      if (saved === null) return { kind: "stale", language };
      return {
        kind: "view",
        view: {
          lines: view.head ?? view.lines,
          options: view.choices ?? [],
          end: view.end,
          step: saved,
          screen: view.screen,
          language,
          ...(phone === null && !view.end && paymentScreens.has(view.screen) ? { needsPhone: true } : {}),
        },
      };
    },
  };
}

/** The language after a confirmed action (which may have been a language change). */
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

/**
 * Stores the chat's new inputs if nobody else did in between (the step it read is still there).
 * Returns the new step, or null when another message won.
 */
async function save(
  db: Db,
  next: {
    channel: ChatChannel;
    chatId: string;
    expectedStep: number | null;
    sessionKey: string;
    inputs: string[];
    language: Language | null;
    at: Date;
  },
): Promise<number | null> {
  const values = {
    sessionKey: next.sessionKey,
    inputs: next.inputs,
    language: next.language,
    lastActivityAt: next.at,
  };
  if (next.expectedStep === null) {
    const inserted = await db
      .insert(chatSessions)
      .values({ channel: next.channel, chatId: next.chatId, step: 1, ...values })
      .onConflictDoNothing()
      .returning({ step: chatSessions.step });
    return inserted[0]?.step ?? null;
  }
  const updated = await db
    .update(chatSessions)
    .set({ ...values, step: sql`${chatSessions.step} + 1` })
    .where(
      and(
        eq(chatSessions.channel, next.channel),
        eq(chatSessions.chatId, next.chatId),
        eq(chatSessions.step, next.expectedStep),
      ),
    )
    .returning({ step: chatSessions.step });
  return updated[0]?.step ?? null;
}
