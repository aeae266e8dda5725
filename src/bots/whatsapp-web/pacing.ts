import type { Clock } from "../../clock.ts";

/**
 * WhatsApp bans numbers that send in bursts, so sends are spaced: at least `perChatMs` between two
 * messages to one chat, at most `perMinute` in any minute overall. Slots are reserved in the order
 * sends ask for them (first come, first served), each no earlier than the one before it, so the
 * per-minute cap holds over every sliding minute. A slot further away than `maxWaitMs` is not
 * taken: the caller gives the message back to its queue rather than holding it for minutes.
 */

export interface PacingOptions {
  perChatMs: number;
  perMinute: number;
  maxWaitMs: number;
}

/**
 * `maxWaitMs` stays well under half the chat delivery worker's send timeout (15 s): the number's
 * lookup and the send itself need the rest, and a send still under way when the worker gives up on
 * it goes out, and again on the retry.
 */
export const DEFAULT_PACING: PacingOptions = { perChatMs: 1_000, perMinute: 20, maxWaitMs: 5_000 };

const WINDOW_MS = 60_000;
/** Beyond this many chats remembered, the ones whose gap has passed are forgotten. */
const MAX_CHATS = 1_000;

export type Slot = { ok: true; waitMs: number } | { ok: false; waitMs: number };

export class Pacer {
  private readonly options: PacingOptions;
  /** Reserved send times within the last minute and ahead, oldest first (never decreasing). */
  private readonly times: number[] = [];
  private readonly lastByChat = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    options: Partial<PacingOptions> = {},
  ) {
    this.options = { ...DEFAULT_PACING, ...options };
    if (this.options.perMinute < 1) throw new Error("pacing: perMinute must be at least 1");
  }

  /** Reserves the next slot for a message to `chat`: wait `waitMs`, then send. */
  reserve(chat: string): Slot {
    const now = this.clock.now().getTime();
    while (this.times.length > 0 && this.times[0]! <= now - WINDOW_MS) this.times.shift();
    const last = this.times.at(-1) ?? Number.NEGATIVE_INFINITY;
    let at = Math.max(
      now,
      last,
      (this.lastByChat.get(chat) ?? Number.NEGATIVE_INFINITY) + this.options.perChatMs,
    );
    // The message `perMinute` sends back must be a full minute before this one.
    const bound = this.times[this.times.length - this.options.perMinute];
    if (bound !== undefined) at = Math.max(at, bound + WINDOW_MS);
    if (at - now > this.options.maxWaitMs) return { ok: false, waitMs: at - now };
    this.times.push(at);
    this.lastByChat.set(chat, at);
    if (this.lastByChat.size > MAX_CHATS) this.forget(now);
    return { ok: true, waitMs: at - now };
  }

  private forget(now: number): void {
    for (const [chat, at] of this.lastByChat)
      if (at + this.options.perChatMs <= now) this.lastByChat.delete(chat);
  }
}
