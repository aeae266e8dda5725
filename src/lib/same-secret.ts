import { timingSafeEqual } from "node:crypto";

/** Compares a presented secret (a path token, a header) with the expected one in constant time. */
export function sameSecret(given: string | undefined, expected: string): boolean {
  const a = Buffer.from(given ?? "");
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
