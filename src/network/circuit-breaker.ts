/**
 * After `threshold` consecutive failures a router is left alone for a cool-down that doubles with
 * each further failure (up to `maxCooldownMs`); then one attempt is let through. Commands to an
 * open circuit fail at once instead of waiting for a timeout, so a dead router costs nothing.
 */
export interface BreakerOptions {
  threshold: number;
  baseCooldownMs: number;
  maxCooldownMs: number;
}

export const defaultBreakerOptions: BreakerOptions = {
  threshold: 2,
  baseCooldownMs: 1_000,
  maxCooldownMs: 60_000,
};

export class CircuitBreaker {
  private failures = 0;
  private openUntil = 0;

  constructor(
    private readonly options: BreakerOptions = defaultBreakerOptions,
    private readonly now: () => number = Date.now,
  ) {}

  get consecutiveFailures(): number {
    return this.failures;
  }

  get isOpen(): boolean {
    return this.failures >= this.options.threshold && this.now() < this.openUntil;
  }

  /** Milliseconds until the next attempt is allowed (0 when allowed now). */
  get retryInMs(): number {
    return this.isOpen ? this.openUntil - this.now() : 0;
  }

  allowsRequest(): boolean {
    return !this.isOpen;
  }

  success(): boolean {
    const recovered = this.failures >= this.options.threshold;
    this.failures = 0;
    this.openUntil = 0;
    return recovered;
  }

  failure(): void {
    this.failures++;
    if (this.failures >= this.options.threshold) {
      const exponent = Math.min(this.failures - this.options.threshold, 16);
      const cooldown = Math.min(this.options.maxCooldownMs, this.options.baseCooldownMs * 2 ** exponent);
      this.openUntil = this.now() + cooldown;
    }
  }
}
