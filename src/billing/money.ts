/**
 * Money is integer KES cents everywhere, and the ledger is exact to the cent. The rounding rules of
 * the system live here, and nowhere else:
 *
 * 1. A time-proportional share of an amount is rounded half up, computed exactly in BigInt
 *    (`unusedShare`).
 * 2. What a subscriber is quoted, asked to pay by M-Pesa and charged agree in whole shillings, so a
 *    subscriber never sees cents the quote did not show (M-Pesa takes no cents):
 *    - a plan change charges (or credits) the difference of the two plans' unused shares, each
 *      rounded half up to a whole shilling (`prorationDelta`): every plan-change charge or credit is
 *      whole shillings, and A→B→C at one instant still costs exactly what A→C costs;
 *    - credit on the account pays a plan change only when it covers all of it; otherwise M-Pesa is
 *      asked for the whole charge and the credit stays for the next bill (`payableAfterCredit`). So
 *      the quote shown = the amount M-Pesa asks = the amount paid = the charge in the SMS, and the
 *      balance on the receipt less that charge is the balance the account then shows;
 *    - each share being rounded on its own, a change's charge can go up a shilling as well as down
 *      as time passes, so an upgrade paid with any charge quoted while its payment was on its way
 *      is charged that amount (`prorationDeltaRange`);
 *    - any other amount asked by M-Pesa is rounded up to the whole shilling (`mpesaAmountCents`)
 *      and the menu shows the rounded figure; the extra cents stay on the account as credit.
 * 3. Messages show the ledger's own figures: a receipt shows the balance right after the payment.
 */

export function assertCents(value: number, what = "amount"): void {
  if (!Number.isSafeInteger(value))
    throw new RangeError(`${what} must be a whole number of cents, got ${value}`);
}

/** floor(numerator / denominator) for BigInts of any sign. */
function floorDiv(numerator: bigint, denominator: bigint): bigint {
  const q = numerator / denominator;
  return numerator % denominator !== 0n && numerator < 0n !== denominator < 0n ? q - 1n : q;
}

/**
 * Not capped at `totalMs`: a plan of a shorter period taken now runs to the end of the current
 * period, so its share of that time can be several of its own periods.
 */
function clampedTimes(remainingMs: number, totalMs: number): { remaining: bigint; total: bigint } {
  if (!(totalMs > 0)) throw new RangeError("period length must be positive");
  return { remaining: BigInt(Math.max(Math.round(remainingMs), 0)), total: BigInt(Math.round(totalMs)) };
}

/**
 * The part of `amountCents` that covers `remainingMs` of a `totalMs` period, rounded half up to the cent.
 * unused(amount, remaining, total) + used(amount, remaining, total) === amount, always.
 */
export function unusedShare(amountCents: number, remainingMs: number, totalMs: number): number {
  assertCents(amountCents);
  const { remaining, total } = clampedTimes(remainingMs, totalMs);
  return Number(floorDiv(BigInt(amountCents) * remaining * 2n + total, total * 2n));
}

/** The same share rounded half up to a whole shilling (a multiple of 100 cents). */
export function unusedShareInShillings(amountCents: number, remainingMs: number, totalMs: number): number {
  assertCents(amountCents);
  const { remaining, total } = clampedTimes(remainingMs, totalMs);
  return Number(floorDiv(BigInt(amountCents) * remaining * 2n + total * 100n, total * 200n)) * 100;
}

/**
 * What moving from one price to another costs for the rest of the period: the difference of the
 * two unused shares in whole shillings (never a share of the difference), so that the charge is
 * whole shillings, A→B→C at one instant costs exactly what A→C costs, and a change undone at the
 * same instant nets zero. Negative: a credit. Each price is spread over its own plan's period
 * (`fromTotalMs`, `toTotalMs`): a week's price is not a month's.
 */
export function prorationDelta(
  fromPriceCents: number,
  toPriceCents: number,
  remainingMs: number,
  fromTotalMs: number,
  toTotalMs = fromTotalMs,
): number {
  return (
    unusedShareInShillings(toPriceCents, remainingMs, toTotalMs) -
    unusedShareInShillings(fromPriceCents, remainingMs, fromTotalMs)
  );
}

/**
 * Whether moving from one price to another costs (1), credits (-1) or is even (0) for any time left:
 * the sign of the exact difference of the two rates. The rounded `prorationDelta` never has the
 * other sign, and the answer does not flip as the period runs out and both shares round alike.
 */
export function prorationDirection(
  fromPriceCents: number,
  toPriceCents: number,
  fromTotalMs: number,
  toTotalMs = fromTotalMs,
): -1 | 0 | 1 {
  assertCents(fromPriceCents);
  assertCents(toPriceCents);
  const to = BigInt(toPriceCents) * BigInt(Math.round(fromTotalMs));
  const from = BigInt(fromPriceCents) * BigInt(Math.round(toTotalMs));
  return to > from ? 1 : to < from ? -1 : 0;
}

/** The remaining times in (`shortestMs`, `longestMs`] at which a share in shillings goes up a shilling. */
function shillingSteps(
  amountCents: number,
  shortestMs: number,
  longestMs: number,
  totalMs: number,
): number[] {
  const first = unusedShareInShillings(amountCents, shortestMs, totalMs) / 100;
  const last = unusedShareInShillings(amountCents, longestMs, totalMs) / 100;
  const total = BigInt(Math.round(totalMs));
  const amount = BigInt(amountCents);
  const steps: number[] = [];
  // The share reaches k shillings once amount·remaining/total ≥ k − ½ shilling.
  for (let k = BigInt(first) + 1n; k <= BigInt(last); k++) {
    const numerator = 50n * total * (2n * k - 1n);
    steps.push(Number((numerator + amount - 1n) / amount));
  }
  return steps;
}

/**
 * The lowest and highest `prorationDelta` for any remaining time from `shortestMs` to `longestMs`:
 * every charge quoted while a payment was on its way. Each share is rounded on its own, so as time
 * passes the difference can go up a shilling as well as down: the quote of a minute ago can be
 * below this minute's.
 */
export function prorationDeltaRange(
  fromPriceCents: number,
  toPriceCents: number,
  shortestMs: number,
  longestMs: number,
  fromTotalMs: number,
  toTotalMs = fromTotalMs,
): { lowest: number; highest: number } {
  const fromSteps = shillingSteps(fromPriceCents, shortestMs, longestMs, fromTotalMs);
  const toSteps = shillingSteps(toPriceCents, shortestMs, longestMs, toTotalMs);
  // Between two steps of one share that share stands still and the other only moves one way, so
  // the difference is lowest and highest at the ends of those stretches.
  const steps = fromSteps.length <= toSteps.length ? fromSteps : toSteps;
  let lowest = Number.POSITIVE_INFINITY;
  let highest = Number.NEGATIVE_INFINITY;
  for (const remaining of [shortestMs, longestMs, ...steps, ...steps.map((s) => s - 1)]) {
    if (remaining < shortestMs || remaining > longestMs) continue;
    const delta = prorationDelta(fromPriceCents, toPriceCents, remaining, fromTotalMs, toTotalMs);
    lowest = Math.min(lowest, delta);
    highest = Math.max(highest, delta);
  }
  return { lowest, highest };
}

/**
 * What a subscriber pays by M-Pesa for a charge: nothing when their balance covers all of it (the
 * charge is taken from the balance), else the whole charge (the credit stays for the next bill).
 * A part-payment from credit is never mixed in, so what M-Pesa asks is the charge itself.
 */
export function payableAfterCredit(chargeCents: number, balanceCents: number): number {
  assertCents(chargeCents);
  assertCents(balanceCents);
  return chargeCents <= 0 || balanceCents >= chargeCents ? 0 : chargeCents;
}

/**
 * A typed amount with its thousands commas taken out, or null when a comma is anywhere else: "10,00"
 * is a slip (KES 10.00? KES 1,000?), not a thousand shillings, so it is asked again, never guessed.
 */
export function withoutThousandsCommas(input: string): string | null {
  const trimmed = input.trim();
  if (!trimmed.includes(",")) return trimmed;
  return /^\d{1,3}(?:,\d{3})+(?:\.\d*)?$/.test(trimmed) ? trimmed.replace(/,/g, "") : null;
}

/** Parses "1500", "1,500", "1500.50" shillings typed by a person into cents; null if it is not money. */
export function parseShillings(input: string): number | null {
  const cleaned = withoutThousandsCommas(input);
  if (cleaned === null) return null;
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

/** The amount (in cents) M-Pesa is asked for `cents`: the menu shows this figure, never another. */
export function mpesaAmountCents(cents: number): number {
  return toWholeShillingsUp(cents) * 100;
}
