/**
 * Money is integer KES cents everywhere. The one rounding rule of the system lives here:
 * a time-proportional share of an amount is rounded half up, computed exactly in BigInt.
 */

export function assertCents(value: number, what = "amount"): void {
  if (!Number.isSafeInteger(value))
    throw new RangeError(`${what} must be a whole number of cents, got ${value}`);
}

/**
 * The part of `amountCents` that covers `remainingMs` of a `totalMs` period, rounded half up.
 * unused(amount, remaining, total) + used(amount, remaining, total) === amount, always.
 */
export function unusedShare(amountCents: number, remainingMs: number, totalMs: number): number {
  assertCents(amountCents);
  if (!(totalMs > 0)) throw new RangeError("period length must be positive");
  const remaining = Math.min(Math.max(Math.round(remainingMs), 0), Math.round(totalMs));
  const total = BigInt(Math.round(totalMs));
  const numerator = BigInt(amountCents) * BigInt(remaining) * 2n + total;
  const denominator = total * 2n;
  // Floor division that is also correct for negative amounts.
  let q = numerator / denominator;
  if (numerator % denominator !== 0n && numerator < 0n) q -= 1n;
  return Number(q);
}

/**
 * What moving from one price to another costs for the rest of the period: the difference of the
 * two unused shares (never a share of the difference), so that A→B→C at one instant costs exactly
 * what A→C costs and a change undone at the same instant nets zero.
 */
export function prorationDelta(
  fromPriceCents: number,
  toPriceCents: number,
  remainingMs: number,
  totalMs: number,
): number {
  return unusedShare(toPriceCents, remainingMs, totalMs) - unusedShare(fromPriceCents, remainingMs, totalMs);
}

/** Parses "1500", "1,500", "1500.50" shillings typed by a person into cents; null if it is not money. */
export function parseShillings(input: string): number | null {
  const cleaned = input.trim().replace(/,/g, "");
  const match = /^(\d{1,9})(?:\.(\d{1,2}))?$/.exec(cleaned);
  if (!match) return null;
  const whole = Number(match[1]);
  const fraction = match[2] ? Number(match[2].padEnd(2, "0")) : 0;
  return whole * 100 + fraction;
}

/** "KES 1,500" or "KES 1,500.50". */
export function formatKes(cents: number): string {
  assertCents(cents);
  const sign = cents < 0 ? "-" : "";
  const abs = Math.abs(cents);
  const whole = Math.floor(abs / 100)
    .toString()
    .replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const fraction = abs % 100;
  return `${sign}KES ${whole}${fraction ? `.${fraction.toString().padStart(2, "0")}` : ""}`;
}

/** M-Pesa takes whole shillings: a balance of KES 10.40 is paid as KES 11. */
export function toWholeShillingsUp(cents: number): number {
  return Math.ceil(cents / 100);
}
