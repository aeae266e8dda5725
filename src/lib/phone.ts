import { parsePhoneNumberFromString } from "libphonenumber-js";

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

/**
 * A phone number as people type it in Kenya (07xx, 01xx, 7xx, 2547xx, +2547xx, with spaces or dashes)
 * as E.164 (`+254712345678`), or null when it is not a valid number. Numbers already in another
 * country's international form are accepted as such.
 */
export const normalizePhone = remembered((input: string): string | null => {
  const trimmed = input.trim();
  if (trimmed === "" || trimmed.length > 32 || !/^[+\d][\d\s().-]*$/.test(trimmed)) return null;
  const parsed = parsePhoneNumberFromString(trimmed, "KE");
  if (!parsed?.isValid()) return null;
  return parsed.number;
});

/** `+254712345678` → `0712 345 678`, the form a Kenyan reads on a small screen. */
export const displayPhone = remembered((e164: string): string => {
  const parsed = parsePhoneNumberFromString(e164);
  if (!parsed) return e164;
  return parsed.country === "KE" ? parsed.formatNational() : parsed.formatInternational();
});
