import { createHash } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type { RouterOSAPI } from "node-routeros";

/**
 * Certificate pinning for API-SSL. Routers serve self-signed certificates, so no CA can vouch for
 * them: each router's certificate is identified by the SHA-256 fingerprint of its DER encoding,
 * confirmed once by an admin, and every later connection must present that certificate. The check
 * runs when the TLS handshake completes and before node-routeros sends `/login`: a router that
 * fails it never sees the password.
 */

/** `AB:CD:…` (32 pairs, upper case), as Winbox and `openssl x509 -fingerprint -sha256` show it. */
export function certificateFingerprint(der: Buffer): string {
  return createHash("sha256").update(der).digest("hex").toUpperCase().match(/../g)!.join(":");
}

/**
 * A fingerprint as an admin may paste it (with or without colons, any case, RouterOS's lower-case
 * hex) in the form stored; null when it is not a SHA-256 fingerprint.
 */
export function normalizeFingerprint(text: string): string | null {
  const hex = text
    .trim()
    .replace(/^sha-?256\s*(fingerprint)?\s*[=:]?\s*/i, "")
    .replace(/[:\s]/g, "");
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return null;
  return hex.toUpperCase().match(/../g)!.join(":");
}

/** The socket node-routeros opened for this connection attempt; it has no public accessor. */
function socketOf(api: RouterOSAPI): TLSSocket | null {
  const connector = (api as unknown as { connector?: { socket?: TLSSocket } | null }).connector;
  const socket = connector?.socket;
  return socket && typeof socket.getPeerCertificate === "function" ? socket : null;
}

/**
 * Call right after `api.connect()` with TLS: `accept` sees the fingerprint of the certificate the
 * router presented, and a `false` destroys the connection before the login goes out. The listener
 * goes first in line (node-routeros logs in from its own `secureConnect` listener); a destroyed
 * socket makes node-routeros refuse to write, so the password is never sent.
 *
 * Throws when the socket cannot be found (node-routeros changed): connecting unchecked is not an option.
 */
export function guardHandshake(api: RouterOSAPI, accept: (fingerprint: string | null) => boolean): void {
  const socket = socketOf(api);
  if (!socket) throw new Error("cannot check the router's TLS certificate: no TLS socket on the connection");
  socket.prependOnceListener("secureConnect", () => {
    const certificate = socket.getPeerCertificate();
    const der = certificate && "raw" in certificate ? certificate.raw : undefined;
    const fingerprint = der && der.length > 0 ? certificateFingerprint(der) : null;
    if (!accept(fingerprint)) socket.destroy(new Error("TLS certificate refused"));
  });
}
