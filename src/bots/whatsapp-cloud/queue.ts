/**
 * Work taken from a webhook and done after it was answered: Meta wants its 200 within seconds and
 * retries whatever it did not get one for. One chain per chat keeps a chat's messages in the order
 * they came (the menu takes one answer per screen); chats do not wait for each other.
 *
 * In-process only: work accepted but not yet done is lost if the process dies (Meta will not resend
 * what it got 200 for). A durable outbox is the next step if that matters.
 */
export class ChatQueue {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly onError: (error: unknown, chat: string) => void,
    /** Beyond this many jobs waiting, new work is refused (the webhook answers 503 and Meta retries). */
    readonly capacity = 1_000,
  ) {}

  get size(): number {
    return this.pending.size;
  }

  hasRoom(count: number): boolean {
    return this.pending.size + count <= this.capacity;
  }

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

  /** Resolves once every job pushed so far, and every job those pushed, is done. */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}
