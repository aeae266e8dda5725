import { createHash } from "node:crypto";

/**
 * The key the portal's status tokens are signed with (`tokenKey`), derived from SECRET_KEY: a key of
 * its own, never the sealing key itself, and the same on every instance (the Node service and the
 * Worker) so that a token one signs the other checks.
 */
export function portalTokenKey(secretKey: Uint8Array): Buffer {
  return createHash("sha256").update("tandao:portal-token:").update(secretKey).digest();
}
