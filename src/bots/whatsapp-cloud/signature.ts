import { createHmac, timingSafeEqual } from "node:crypto";

/** `sha256=` and 64 lowercase or uppercase hex digits: anything else is not Meta's header. */
const headerPattern = /^sha256=([0-9a-fA-F]{64})$/;

/**
 * Whether `header` (`X-Hub-Signature-256`) is Meta's HMAC-SHA256 of exactly these bytes under the
 * app secret. Checked on the raw bytes, before any parsing, and compared in constant time so the
 * answer's timing tells nothing about how much of a forged signature was right.
 */
export function isSignedBy(appSecret: string, body: Uint8Array, header: string | undefined): boolean {
  const match = header ? headerPattern.exec(header) : null;
  if (!match) return false;
  const expected = createHmac("sha256", appSecret).update(body).digest();
  const given = Buffer.from(match[1]!, "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}
