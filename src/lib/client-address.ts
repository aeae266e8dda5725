import { getConnInfo } from "@hono/node-server/conninfo";
import type { Context } from "hono";
import { type AddressMatcher, addressMatcher } from "./address-ranges.ts";

/**
 * One spelling per address, so that a list entry matches however it was written: an IPv4-mapped
 * IPv6 address as its IPv4, an IPv6 address in its canonical form (lower case, zeros compressed),
 * as the URL parser writes it.
 */
export function normalizeIp(ip: string): string {
  const address = ip
    .trim()
    .toLowerCase()
    .replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
  if (!address.includes(":")) return address;
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address;
  }
}

/**
 * The client's address. Behind a reverse proxy the socket's peer is the proxy, so the client is
 * read from `X-Forwarded-For`, but only when the peer is one of the configured proxies (anyone
 * else could write that header), walking from the right past the trusted proxies: the first
 * address a trusted hop did not add is the client.
 */
export function clientAddress(
  peer: string,
  forwardedFor: string | undefined,
  trustedProxies: AddressMatcher,
): string {
  const socket = normalizeIp(peer);
  if (!forwardedFor || !trustedProxies(socket)) return socket;
  const hops = forwardedFor.split(",").map(normalizeIp).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    if (!trustedProxies(hops[i]!)) return hops[i]!;
  }
  return hops[0] ?? socket;
}

function peerAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? "";
  } catch {
    return "";
  }
}

/** The request's client address (see `clientAddress`). */
export function requestClientAddress(c: Context, trustedProxies: AddressMatcher): string {
  return clientAddress(peerAddress(c), c.req.header("x-forwarded-for"), trustedProxies);
}

/**
 * The client's address on a Cloudflare Worker, where there is no socket to ask: `CF-Connecting-IP`,
 * which Cloudflare sets on every request it passes on (a client's own is replaced).
 */
export function cloudflareClientAddress(c: Context): string {
  return normalizeIp(c.req.header("cf-connecting-ip") ?? "");
}

/** Reads a request's client address. */
export type ClientAddressReader = (c: Context) => string;

/**
 * How the routes read the client address: `read` where the runtime says how (the Worker passes
 * `cloudflareClientAddress`), else the socket's peer, believing `X-Forwarded-For` only from
 * `trustedProxies`. One place, so the allowlists and the portal's limits never disagree.
 */
export function clientAddressReader(
  trustedProxies: readonly string[] = [],
  read?: ClientAddressReader,
): ClientAddressReader {
  if (read) return read;
  const proxies = addressMatcher(trustedProxies);
  return (c) => requestClientAddress(c, proxies);
}

/** An allowlist check (addresses and CIDR ranges): null when every address is allowed. */
export function addressAllowlist(
  allowed: readonly string[] | undefined,
  readAddress: ClientAddressReader,
): ((c: Context) => boolean) | null {
  if (!allowed?.length) return null;
  const isAllowed = addressMatcher(allowed);
  return (c) => isAllowed(readAddress(c));
}
