import type { ChatState } from "../chat-state.ts";

/**
 * What the webhook route and the bot tell each other about one update, keyed by the update object
 * itself (the route hands grammY the object it parsed): its inbox row, whether the bot failed on it,
 * whether the chat menu already marked the row handled in the statement that saved the input, and
 * the chat's state read with the update.
 */

/** The chat_inbox row an update was stored in. */
export const inboxIdOf = new WeakMap<object, number>();

/**
 * Updates a handler failed on (the error boundary answered the person with an apology): the route
 * keeps them in the inbox as failed, and the retry loop handles them again.
 */
export const failedUpdates = new WeakSet<object>();

/** Updates whose inbox row was marked handled together with the menu's new state. */
export const settledUpdates = new WeakSet<object>();

/**
 * The chat's state as the statement that stored the update read it: the menu takes it instead of
 * reading again, unless something changed it since (linking the chat does, so that path reads).
 */
export const storedStateOf = new WeakMap<object, ChatState>();
