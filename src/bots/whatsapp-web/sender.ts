import { setTimeout as sleepFor } from "node:timers/promises";
import { type Clock, systemClock } from "../../clock.ts";
import { type ChatContent, ChatSendError, type ChatSender } from "../chat-sender.ts";
import type { WhatsAppWebClient } from "./client.ts";
import { Pacer, type PacingOptions } from "./pacing.ts";
import { textOf } from "./render.ts";

/**
 * The `ChatSender` of WhatsApp Web: chat ids are phone numbers in international digits. Sends are
 * paced (pacing.ts) and fail with `unavailable` while the session is not ready, so the delivery
 * worker keeps the message, without using up its attempts, and tries again after a reconnect.
 */

export interface ClientLink {
  /** The connected client, or null while logging in or reconnecting. */
  readyClient(): WhatsAppWebClient | null;
}

export interface SenderOptions {
  pacing?: Partial<PacingOptions>;
  clock?: Clock;
  /** Waits out a pacing slot; injected so tests need no real waits. */
  sleep?: (ms: number) => Promise<void>;
}

/** Chat ids looked up already; only found numbers are kept (a number may join WhatsApp later). */
const MAX_KNOWN = 5_000;

/** Errors whatsapp-web.js throws for a recipient it cannot address (retrying will not help). */
const RECIPIENT_ERRORS = /invalid wid|no lid for user|wid error|not a valid (user|phone)/i;

function failureOf(error: unknown): ChatSendError {
  if (error instanceof ChatSendError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (RECIPIENT_ERRORS.test(message)) return new ChatSendError("recipient", message);
  // A closed browser, a lost connection, a timeout: the next session may well succeed.
  return new ChatSendError("retry", message);
}

export function createWhatsAppWebSender(link: ClientLink, options: SenderOptions = {}): ChatSender {
  const clock = options.clock ?? systemClock;
  const sleep = options.sleep ?? ((ms: number) => sleepFor(ms));
  const pacer = new Pacer(clock, options.pacing);
  const known = new Map<string, string>();

  async function chatIdOf(client: WhatsAppWebClient, digits: string): Promise<string> {
    const cached = known.get(digits);
    if (cached) return cached;
    const chatId = await client.getNumberId(digits).catch((error: unknown) => {
      throw failureOf(error);
    });
    if (chatId === null) throw new ChatSendError("recipient", "this number is not on WhatsApp");
    if (known.size >= MAX_KNOWN) known.delete(known.keys().next().value!);
    known.set(digits, chatId);
    return chatId;
  }

  return {
    channel: "whatsapp",
    async send(to: string, content: ChatContent, signal?: AbortSignal) {
      const text = textOf(content);
      if (text === null)
        throw new ChatSendError("refused", `WhatsApp Web sends only text, not ${content.kind}`);
      if (!/^\d{7,15}$/.test(to)) throw new ChatSendError("recipient", "not a phone number in digits");
      if (!link.readyClient()) throw new ChatSendError("unavailable", "WhatsApp Web is not connected");
      const slot = pacer.reserve(to);
      if (!slot.ok)
        throw new ChatSendError("retry", "WhatsApp Web is pacing its sends", Math.ceil(slot.waitMs / 1000));
      if (slot.waitMs > 0) await sleep(slot.waitMs);
      // The worker stopped waiting for this send meanwhile and will try it again: sent now, it would
      // go out twice.
      if (signal?.aborted)
        throw new ChatSendError("retry", "not sent: its time ran out while it waited its turn");
      // The session may have dropped while this send waited for its turn.
      const client = link.readyClient();
      if (!client) throw new ChatSendError("unavailable", "WhatsApp Web is not connected");
      const chatId = await chatIdOf(client, to);
      // The number's lookup may have taken the rest of the worker's patience.
      if (signal?.aborted)
        throw new ChatSendError("retry", "not sent: its time ran out while its number was looked up");
      try {
        const sent = await client.sendMessage(chatId, text);
        return { messageId: sent.id };
      } catch (error) {
        throw failureOf(error);
      }
    },
  };
}
