import { ACCOUNT_NUMBER } from "../../billing/accounts.ts";
import { parseShillings } from "../../billing/money.ts";
import type { AdminRole } from "../../db/schema/index.ts";
import { checkPhone, displayPhone } from "../../lib/phone.ts";
import { isRole } from "./roles.ts";

/**
 * What an admin types, read strictly: each reader answers a value or a message that says what was
 * wrong and what to type instead. Money is read from the text into integer cents, never through a
 * floating-point number.
 */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

/** The most one cash payment recorded by chat may be: KES 1,000,000 (a typo guard, not a rule of money). */
export const MAX_CASH_CENTS = 100_000_000;

/** The words after a command, split on white space. */
export const words = (text: string): string[] => text.trim().split(/\s+/).filter(Boolean);

/** The command a message starts with (`/Find@bot x` → `find`), or null when it starts with none. */
export const commandWordIn = (text: string): string | null =>
  /^\/([A-Za-z0-9_]+)/.exec(text)?.[1]?.toLowerCase() ?? null;

/**
 * Shillings as typed ("1500", "1,500", "1500.50", "KES1500", "Ksh.1,500", "1500/=") → cents, at most KES 1,000,000
 * (`what` names the limit in the refusal).
 */
export function parseAmount(input: string | undefined, what = "one cash payment"): Parsed<number> {
  if (input === undefined || input.trim() === "") return fail("Say the amount in shillings, e.g. 1500.");
  // The currency as people write it: KES 500, Ksh.500, Sh.500, /= after.
  const typed = input
    .trim()
    .replace(/^(kes|kshs?|shs?)\.?\s*/i, "")
    .replace(/\s*\/=$/, "");
  if (/^-/.test(typed)) return fail("The amount must be more than zero.");
  if (/^[\d,]*\.\d{3,}$/.test(typed))
    return fail(`${input} has more than two decimals: shillings and cents only, e.g. 1500.50.`);
  if (!/^(\d{1,3}(,\d{3})+|\d+)(\.\d{1,2})?$/.test(typed))
    return fail(`"${input}" is not an amount: type shillings, e.g. 1500 or 1,500.50.`);
  if (typed.replace(/[,.]/g, "").replace(/^0+/, "").length > 11)
    return fail(`${input} is more than ${what} can be (KES 1,000,000): check the amount.`);
  const cents = parseShillings(typed);
  if (cents === null) return fail(`"${input}" is not an amount: type shillings, e.g. 1500 or 1,500.50.`);
  if (cents <= 0) return fail("The amount must be more than zero.");
  if (cents > MAX_CASH_CENTS)
    return fail(`${input} is more than ${what} can be (KES 1,000,000): check the amount.`);
  return ok(cents);
}

export function parseTelegramId(input: string | undefined): Parsed<number> {
  if (input === undefined)
    return fail("Say the person's Telegram user id (a number; they can get it from @userinfobot).");
  if (!/^\d{1,15}$/.test(input) || Number(input) <= 0)
    return fail(`"${input}" is not a Telegram user id: it is a positive number, e.g. 123456789.`);
  return ok(Number(input));
}

export function parseRole(input: string | undefined): Parsed<AdminRole> {
  const role = input?.toLowerCase();
  if (role === undefined || !isRole(role))
    return fail(
      `${input === undefined ? "Say the role" : `"${input}" is not a role`}: owner, admin, support or viewer.`,
    );
  return ok(role);
}

/** An account number as typed (the lookup itself normalises case and a leading `#`). */
export function parseAccount(input: string | undefined): Parsed<string> {
  if (input === undefined) return fail("Say the account number, e.g. TD00001.");
  if (!ACCOUNT_NUMBER.test(input.replace(/^#/, "")))
    return fail(`"${input}" is not an account number, e.g. TD00001.`);
  return ok(input);
}

/** Free text (a note, a reason, a name): printable, bounded. */
export function parseNote(parts: string[], max = 200): Parsed<string> {
  const text = parts.join(" ").trim();
  if (text.length > max) return fail(`That note is too long (${text.length} characters; at most ${max}).`);
  return ok(text);
}

/**
 * A customer's phone as an admin types it, by the rule every channel uses (`checkPhone`): national
 * forms are read as the first served country's, and a number of a country the ISP does not serve
 * is refused (USSD, M-Pesa prompts and SMS would not reach it), as the import and the CLI refuse it.
 */
export function parseCustomerPhone(input: string, served?: readonly string[]): Parsed<string> {
  const verdict = checkPhone(input, served);
  if (verdict.kind === "invalid") return fail(`"${input}" is not a phone number: type it as 0712 345678.`);
  if (verdict.kind === "foreign")
    return fail(
      `${displayPhone(verdict.e164)} is a number of a country this ISP does not serve (SERVED_COUNTRIES): USSD, M-Pesa prompts and SMS would not reach it.`,
    );
  return { ok: true, value: verdict.e164 };
}
