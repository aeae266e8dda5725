import { parsePhoneNumberFromString } from "libphonenumber-js";

/**
 * A phone number as people type it in Kenya (07xx, 01xx, 7xx, 2547xx, +2547xx, with spaces or dashes)
 * as E.164 (`+254712345678`), or null when it is not a valid number. Numbers already in another
 * country's international form are accepted as such.
 */
export function normalizePhone(input: string): string | null {
  const known = recent.get(input);
  if (known !== undefined) return known;
  const result = parse(input);
  // Every USSD request carries the caller's number: remember the last few thousand answers.
  if (recent.size >= 5_000) recent.delete(recent.keys().next().value!);
  recent.set(input, result);
  return result;
}

const recent = new Map<string, string | null>();

function parse(input: string): string | null {
  const trimmed = input.trim();
  if (trimmed === "" || trimmed.length > 32 || !/^[+\d][\d\s().-]*$/.test(trimmed)) return null;
  const parsed = parsePhoneNumberFromString(trimmed, "KE");
  if (!parsed?.isValid()) return null;
  return parsed.number;
}

/** `+254712345678` → `0712 345 678`, the form a Kenyan reads on a small screen. */
export function displayPhone(e164: string): string {
  const parsed = parsePhoneNumberFromString(e164);
  if (!parsed) return e164;
  return parsed.country === "KE" ? parsed.formatNational() : parsed.formatInternational();
}
