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
/** A chat's state as kept, and the screen its last answer showed (where its next input is chosen). */
export interface KnownChat {
  state: ChatState;
  screen: string;
}

export class KnownChats {
  readonly #chats = new Map<string, KnownChat>();
  /**
   * Screens an input acted on (a confirm, a language): learned, not listed. An input there is stored
   * as it comes, as an input of a chat not kept, rather than answered from the kept state first only
   * to find that it must be stored before it acts (a round trip more on the way to the answer).
   */
  readonly #actingScreens = new Set<string>();

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
   * The chat as kept, taken out: the message that takes it is the only one to use it, so a second
   * message of the chat arriving meanwhile goes the way of any other (stored, then read). Nothing
   * when the kept state is too old, or its screen is one where inputs act.
   */
  take(channel: ChatChannel, chatId: string, now: Date): KnownChat | undefined {
    const key = keyOf(channel, chatId);
    const chat = this.#chats.get(key);
    if (!chat) return undefined;
    this.#chats.delete(key);
    const savedAt = chat.state.session?.lastActivityAt.getTime() ?? 0;
    if (now.getTime() - savedAt > this.maxAgeMs || this.#actingScreens.has(chat.screen)) return undefined;
    return chat;
  }

  has(channel: ChatChannel, chatId: string): boolean {
    return this.#chats.has(keyOf(channel, chatId));
  }

  /** The state the chat's last save left, and the screen it showed (a state without a version is not kept). */
  remember(channel: ChatChannel, chatId: string, state: ChatState, screen: string): void {
    if (!state.version || !state.session) return;
    const key = keyOf(channel, chatId);
    this.#chats.delete(key);
    this.#chats.set(key, { state, screen });
    if (this.#chats.size > this.capacity) {
      const oldest = this.#chats.keys().next().value;
      if (oldest !== undefined) this.#chats.delete(oldest);
    }
  }

  /** An input on `screen` was found to act. */
  actsOn(screen: string): void {
    this.#actingScreens.add(screen);
  }

  forget(channel: ChatChannel, chatId: string): void {
    this.#chats.delete(keyOf(channel, chatId));
  }
}

const keyOf = (channel: ChatChannel, chatId: string) => `${channel}\n${chatId}`;
