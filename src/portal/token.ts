import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * The id a portal page polls its payment with: the intent's id and an HMAC binding it to the
 * router, so that nobody can read another buyer's voucher by counting ids. Nothing is stored: any
 * instance holding the same key checks it.
 */
export interface TokenSigner {
  sign(routerId: number, intentId: number): string;
  /** The intent id, or null when the token is not one this key made for this router. */
  verify(routerId: number, token: string): number | null;
}

export function createTokenSigner(key: Uint8Array | string): TokenSigner {
  if ((typeof key === "string" ? Buffer.byteLength(key) : key.length) < 16)
    throw new Error("the portal token key must have at least 16 bytes");
  const mac = (routerId: number, intentId: number) =>
    createHmac("sha256", key).update(`portal-status:${routerId}:${intentId}`).digest().subarray(0, 18);
  return {
    sign(routerId, intentId) {
      return `${intentId.toString(36)}.${mac(routerId, intentId).toString("base64url")}`;
    },
    verify(routerId, token) {
      const m = /^([0-9a-z]{1,11})\.([A-Za-z0-9_-]{24})$/.exec(token);
      if (!m) return null;
      const intentId = Number.parseInt(m[1]!, 36);
      if (!Number.isSafeInteger(intentId) || intentId <= 0 || intentId > 2 ** 31) return null;
      const given = Buffer.from(m[2]!, "base64url");
      const want = mac(routerId, intentId);
      return given.length === want.length && timingSafeEqual(given, want) ? intentId : null;
    },
  };
}
