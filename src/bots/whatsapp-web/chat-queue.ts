/**
 * Messages handled one after another per chat (the menu takes one answer per screen, in the order
 * typed), chats in parallel. Each job first stores its message (chat_inbox), so a restart loses only
 * what WhatsApp had not yet handed over.
 */
export class ChatQueue {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly onError: (error: unknown, chat: string) => void) {}

  push(chat: string, job: () => Promise<void>): void {
    const previous = this.tails.get(chat) ?? Promise.resolve();
    const next = previous.then(job).catch((error: unknown) => this.onError(error, chat));
    this.tails.set(chat, next);
    this.pending.add(next);
    void next.finally(() => {
      this.pending.delete(next);
      if (this.tails.get(chat) === next) this.tails.delete(chat);
    });
  }

  /** Resolves once every job pushed so far (and any pushed meanwhile) is done. */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}
