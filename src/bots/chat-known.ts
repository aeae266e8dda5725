import type { ChatChannel } from "../db/schema/index.ts";
import type { ChatState } from "./chat-state.ts";

/**
 * The state of chats this process saved last, kept so that the chat's next message needs no read
 * before the menu runs: that message is stored, checked and saved by one statement
 * (chat-save-unstored.ts) instead of a store-and-read and then a save. Only a speed-up, never the
 * truth: the statement compares the chat's step and the state's version (`ChatState.version`) with
 * the database's, and when anything changed (another instance answered, an admin unlinked the chat,
 * the customer was renamed) it stores the message as any other and reads the state afresh. A restart
 * or a second instance loses nothing but the speed-up.
 */
export class KnownChats {
  readonly #states = new Map<string, ChatState>();

  /**
   * `capacity`: chats beyond this many are forgotten, the least recently saved first. `maxAgeMs`: a
   * state saved longer ago is not used (a chat's row may have gone and come back since, see
   * `firstChatStep`; the check below would then rest on the version alone).
   */
  constructor(
    private readonly capacity = 20_000,
    private readonly maxAgeMs = 10 * 60_000,
  ) {}

  /**
   * The chat's state, taken out: the message that takes it is the only one to use it, so a second
   * message of the chat arriving meanwhile goes the way of any other (stored, then read).
   */
  take(channel: ChatChannel, chatId: string, now: Date): ChatState | undefined {
    const key = keyOf(channel, chatId);
    const state = this.#states.get(key);
    if (!state) return undefined;
    this.#states.delete(key);
    const savedAt = state.session?.lastActivityAt.getTime() ?? 0;
    return now.getTime() - savedAt <= this.maxAgeMs ? state : undefined;
  }

  has(channel: ChatChannel, chatId: string): boolean {
    return this.#states.has(keyOf(channel, chatId));
  }

  /** The state the chat's last save left (a state without a version is not kept). */
  remember(channel: ChatChannel, chatId: string, state: ChatState): void {
    if (!state.version || !state.session) return;
    const key = keyOf(channel, chatId);
    this.#states.delete(key);
    this.#states.set(key, state);
    if (this.#states.size > this.capacity) {
      const oldest = this.#states.keys().next().value;
      if (oldest !== undefined) this.#states.delete(oldest);
    }
  }

  forget(channel: ChatChannel, chatId: string): void {
    this.#states.delete(keyOf(channel, chatId));
  }
}

const keyOf = (channel: ChatChannel, chatId: string) => `${channel}\n${chatId}`;
