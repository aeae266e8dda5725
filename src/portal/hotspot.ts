/**
 * MikroTik's hotspot variables, as the router's `login.html` hands them to the portal (query
 * parameters), kept through every step so the page can finally log the device in.
 */
export interface HotspotVars {
  /** `$(link-login-only)`: where the page sends username, password and dst. */
  linkLoginOnly: string;
  /** `$(link-orig)`: where the person was going. */
  dst: string;
  mac: string;
  ip: string;
  username: string;
  /** `$(error)`: why the router refused the last login, in its words. */
  error: string;
}

export const hotspotParams = {
  linkLoginOnly: "link-login-only",
  dst: "dst",
  mac: "mac",
  ip: "ip",
  username: "username",
  error: "error",
} as const satisfies Record<keyof HotspotVars, string>;

const clip = (value: unknown, max: number) => (typeof value === "string" ? value.trim().slice(0, max) : "");

/**
 * Where the browser goes after logging in, only when it is a web address: the router's login page
 * sends the browser to it, and a `javascript:` one in a crafted link would run there.
 */
function webAddress(value: string): string {
  try {
    const protocol = new URL(value).protocol;
    return protocol === "http:" || protocol === "https:" ? value : "";
  } catch {
    return "";
  }
}

/** The variables from a query or form; `link-orig` is read as `dst` too (older login pages). */
export function readHotspotVars(source: Record<string, unknown>): HotspotVars {
  return {
    linkLoginOnly: clip(source["link-login-only"], 300),
    dst: webAddress(clip(source.dst ?? source["link-orig"], 1000)),
    mac: clip(source.mac, 64),
    ip: clip(source.ip, 64),
    username: clip(source.username, 64),
    error: clip(source.error, 200),
  };
}

/** The device's MAC as the hotspot wrote it, in one spelling (`AA:BB:…`), or "" when there is none. */
export function deviceMac(vars: HotspotVars): string {
  return vars.mac
    .toUpperCase()
    .replace(/[^0-9A-F:]/g, "")
    .slice(0, 17);
}

/** Private, shared (CGNAT) and loopback IPv4 ranges: where a MikroTik hotspot's own address sits. */
const HOTSPOT_NETWORKS: readonly [number, number][] = [
  [0x0a000000, 8], // 10.0.0.0/8
  [0xac100000, 12], // 172.16.0.0/12
  [0xc0a80000, 16], // 192.168.0.0/16
  [0x64400000, 10], // 100.64.0.0/10
  [0x7f000000, 8], // 127.0.0.0/8
];

function isPrivateIpv4(host: string): boolean {
  const parts = host.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return false;
  // Unsigned 32-bit arithmetic (`>>> 0`), so that addresses from 128.0.0.0 up stay positive.
  const address = parts.reduce((a, p) => ((a << 8) | Number(p)) >>> 0, 0);
  return HOTSPOT_NETWORKS.some(([network, bits]) => address >>> (32 - bits) === network >>> (32 - bits));
}

/**
 * The hotspot login URL the page may send credentials to, or null. Only a plain `http(s)` URL whose
 * path is the hotspot's `/login`, without user info, on a host a hotspot answers at: a private
 * address, or a name in `loginHosts` (`HOTSPOT_LOGIN_HOSTS`, the hotspot profiles' DNS names). A
 * crafted link pointing the login anywhere else would hand someone else the code the buyer paid for;
 * the page then shows the code to type instead.
 */
export function safeLoginUrl(value: string, loginHosts: readonly string[] = []): string | null {
  if (!value) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  if (url.username || url.password || url.pathname !== "/login") return null;
  // The URL parser has already lower-cased the name and written any IPv4 form as dotted decimal.
  const host = url.hostname;
  if (!isPrivateIpv4(host) && !loginHosts.some((name) => name.toLowerCase() === host)) return null;
  return url.toString();
}

/**
 * The hotspot login address carrying the credentials in its query, for a plain page load. The portal
 * is served over HTTPS and the hotspot's login address is usually plain http: Chromium stops a form
 * submitted from one to the other at its full-page "not secure" warning, but not a link or a
 * redirect. MikroTik's `/login` takes username, password and dst by GET as it does by POST.
 */
export function hotspotLoginHref(
  loginUrl: string,
  login: { username: string; password: string; dst: string },
): string {
  const url = new URL(loginUrl);
  url.searchParams.set("username", login.username);
  url.searchParams.set("password", login.password);
  if (login.dst) url.searchParams.set("dst", login.dst);
  return url.toString();
}

/**
 * The variables as query parameters (empty ones left out), for links, form actions and redirects
 * that keep them. Not `error`: the router's refusal belongs to the page it came with, and carried on
 * it would greet the next purchase with an old failure.
 */
export function hotspotQuery(vars: HotspotVars, extra: Record<string, string> = {}): string {
  const params = new URLSearchParams();
  for (const [key, name] of Object.entries(hotspotParams) as [keyof HotspotVars, string][]) {
    if (key !== "error" && vars[key]) params.set(name, vars[key]);
  }
  for (const [name, value] of Object.entries(extra)) if (value) params.set(name, value);
  const text = params.toString();
  return text ? `?${text}` : "";
}
