import {
  type CountryCode,
  getCountryCallingCode,
  isSupportedCountry,
  parsePhoneNumberFromString,
} from "libphonenumber-js";

/**
 * Remembers the last few thousand answers of a pure function of a phone number: every USSD request
 * carries the caller's number, and parsing it is among the costliest steps of a menu request.
 */
function remembered<T>(work: (input: string) => T): (input: string) => T {
  const recent = new Map<string, T>();
  return (input) => {
    if (recent.has(input)) return recent.get(input) as T;
    const result = work(input);
    if (recent.size >= 5_000) recent.delete(recent.keys().next().value!);
    recent.set(input, result);
    return result;
  };
}

/** The countries served when nothing is configured (`SERVED_COUNTRIES`). */
export const DEFAULT_SERVED_COUNTRIES: readonly string[] = ["KE"];

export function isCountryCode(code: string): boolean {
  return /^[A-Z]{2}$/.test(code) && isSupportedCountry(code);
}

/** A country's calling code as dialled (`KE` → `+254`), or null for a code that is not a country's. */
export function callingCodeOf(country: string): string | null {
  return isCountryCode(country) ? `+${getCountryCallingCode(country as CountryCode)}` : null;
}

interface ParsedPhone {
  e164: string;
  /** ISO code of the number's country; null for numbers of no country (e.g. +800). */
  country: string | null;
}

/**
 * A number as people type it in `home` (07xx, 01xx, 7xx, 2547xx, +2547xx, with spaces or dashes),
 * or in another country's international form, with or without its `+` (a gateway may drop it).
 */
function parse(input: string, home: string): ParsedPhone | null {
  const trimmed = input.trim();
  if (trimmed === "" || trimmed.length > 32 || !/^[+\d][\d\s().-]*$/.test(trimmed)) return null;
  const attempts = [trimmed];
  if (!trimmed.startsWith("+")) attempts.push(`+${trimmed}`);
  for (const attempt of attempts) {
    const parsed = parsePhoneNumberFromString(attempt, home as CountryCode);
    if (parsed?.isValid()) return { e164: parsed.number, country: parsed.country ?? null };
  }
  return null;
}

/**
 * A phone number as E.164 (`+254712345678`), or null when it is not a valid number. National forms
 * are read as Kenyan; numbers in another country's international form are accepted as such.
 */
export const normalizePhone = remembered((input: string): string | null => parse(input, "KE")?.e164 ?? null);

/** Whether a number may use the service: served, from a country that is not served, or not a number. */
export type PhoneVerdict =
  | { kind: "served"; e164: string }
  | { kind: "foreign"; e164: string; country: string | null }
  | { kind: "invalid" };

const verdicts = new Map<string, (input: string) => PhoneVerdict>();

/** Kenyan mobile numbers: 07… and 01… (landlines are 020…, 041…; toll-free 0800…). */
export const isKenyanMobile = (e164: string): boolean => /^\+254[17]\d{8}$/.test(e164);

/**
 * The one rule for who may use the service by phone: a valid number of one of the `served`
 * countries (ISO codes, `SERVED_COUNTRIES`; national forms are read as the first one's). Anything
 * else valid is `foreign`, and is told so rather than served half-way.
 */
export function checkPhone(
  input: string,
  served: readonly string[] = DEFAULT_SERVED_COUNTRIES,
): PhoneVerdict {
  const key = served.join(",");
  let check = verdicts.get(key);
  if (!check) {
    const home = served[0] ?? "KE";
    check = remembered((raw: string): PhoneVerdict => {
      const parsed = parse(raw, home);
      if (!parsed) return { kind: "invalid" };
      // The service needs a mobile: M-Pesa prompts and SMS reach no landline or toll-free number.
      if (parsed.country === "KE" && !isKenyanMobile(parsed.e164)) return { kind: "invalid" };
      return parsed.country !== null && served.includes(parsed.country)
        ? { kind: "served", e164: parsed.e164 }
        : { kind: "foreign", e164: parsed.e164, country: parsed.country };
    });
    verdicts.set(key, check);
  }
  return check(input);
}

/** `+254712345678` → `0712 345 678`, the form a Kenyan reads on a small screen. */
export const displayPhone = remembered((e164: string): string => {
  const parsed = parsePhoneNumberFromString(e164);
  if (!parsed) return e164;
  return parsed.country === "KE" ? parsed.formatNational() : parsed.formatInternational();
});
