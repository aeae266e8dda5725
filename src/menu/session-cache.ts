/**
 * What a menu conversation has already read (account summary, plan lists, quotes), kept for a short
 * while so that replaying the input history on each request does not read it again. It lives in one
 * process and for less than a USSD session lasts: a miss (another instance, an expired entry) reads
 * the data afresh, and what is read may differ from what was shown. So nothing may rely on it to
 * mean the same thing twice: plan lists are kept with the session (see `plansOf`), and confirms
 * check what they act on. Entries expire by age and the oldest go first when full.
 */
export class SessionCache {
  private readonly entries = new Map<string, { at: number; value: Promise<unknown> }>();

  constructor(
    private readonly ttlMs = 60_000,
    private readonly maxEntries = 20_000,
    private readonly now: () => number = Date.now,
  ) {}

  get<T>(key: string): Promise<T> | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (this.now() - entry.at > this.ttlMs) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value as Promise<T>;
  }

  set<T>(key: string, value: Promise<T>): void {
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(key, { at: this.now(), value });
    // A failed read is not remembered.
    value.catch(() => {
      if (this.entries.get(key)?.value === value) this.entries.delete(key);
    });
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}
