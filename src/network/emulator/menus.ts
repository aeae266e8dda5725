import type { ParamType } from "./values.ts";

/**
 * The menus the emulator serves, as RouterOS 7 defines them: which commands each has, which
 * parameters `add` and `set` take (anything else is an unknown parameter), the type of each, and
 * what an item holds when a parameter is not given. Sources: the RouterOS manual's property tables
 * for PPP AAA and HotSpot users, and what routers print. Notably `/ip/hotspot/user/profile` has no
 * `comment`.
 */

export type Item = Record<string, string>;
export type Verb = "print" | "getall" | "add" | "set" | "remove" | "enable" | "disable";

export interface MenuSpec {
  verbs: readonly Verb[];
  /** Parameters `add` and `set` take. */
  params: Record<string, ParamType>;
  /** The parameter no two items may share, and RouterOS's text when an add or set would. */
  unique?: { param: string; duplicate: string };
  /** What an item holds for the parameters not given (as the router prints them). */
  defaults: Item;
  /** Items every router has, which cannot be removed. */
  builtins?: Item[];
  /** Parameters of other menus that name an item of this one: such an item is in use. */
  usedBy?: Array<{ menu: string; param: string }>;
}

const text = { kind: "text" } as const;
const bool = { kind: "bool" } as const;
const time = { kind: "time" } as const;
const timeOrNone = { kind: "time", words: ["none"] } as const;
const bytes = { kind: "int", min: 0 } as const;
const ip = { kind: "ip" } as const;
const rateLimit = { kind: "rate-limit" } as const;
const triState = { kind: "enum", values: ["default", "no", "yes"] } as const;
const fourState = { kind: "enum", values: ["default", "no", "yes", "required"] } as const;

/** Parameters every configurable menu item has. */
const common = { comment: text } as const;

const readWrite: readonly Verb[] = ["print", "getall", "add", "set", "remove"];
const withSwitch: readonly Verb[] = [...readWrite, "enable", "disable"];
const sessions: readonly Verb[] = ["print", "getall", "remove"];

export const menuSpecs: Record<string, MenuSpec> = {
  "/ppp/secret": {
    verbs: withSwitch,
    params: {
      ...common,
      name: text,
      password: text,
      service: { kind: "enum", values: ["any", "async", "l2tp", "ovpn", "pppoe", "pptp", "sstp"] },
      profile: { kind: "ref", menu: "/ppp/profile" },
      "caller-id": text,
      "local-address": ip,
      "remote-address": ip,
      routes: text,
      "ipv6-routes": text,
      "remote-ipv6-prefix": text,
      "limit-bytes-in": bytes,
      "limit-bytes-out": bytes,
      disabled: bool,
    },
    unique: { param: "name", duplicate: "failure: secret with the same name already exists" },
    defaults: { service: "any", profile: "default", password: "", "caller-id": "", disabled: "false" },
  },
  "/ppp/profile": {
    verbs: readWrite,
    params: {
      ...common,
      name: text,
      "rate-limit": rateLimit,
      "local-address": text,
      "remote-address": text,
      "dns-server": text,
      "wins-server": text,
      "address-list": text,
      bridge: text,
      "interface-list": text,
      "incoming-filter": text,
      "outgoing-filter": text,
      "on-up": text,
      "on-down": text,
      "parent-queue": text,
      "queue-type": text,
      "insert-queue-before": text,
      "idle-timeout": timeOrNone,
      "session-timeout": timeOrNone,
      "only-one": triState,
      "change-tcp-mss": triState,
      "use-compression": triState,
      "use-upnp": triState,
      "use-encryption": fourState,
      "use-mpls": fourState,
      "use-ipv6": fourState,
    },
    unique: { param: "name", duplicate: "failure: profile with the same name already exists" },
    defaults: { "only-one": "default", "change-tcp-mss": "default" },
    builtins: [{ name: "default" }, { name: "default-encryption" }],
    usedBy: [{ menu: "/ppp/secret", param: "profile" }],
  },
  "/ppp/active": {
    verbs: sessions,
    params: {},
    defaults: { service: "pppoe", "caller-id": "", address: "", uptime: "0s", encoding: "", radius: "false" },
  },
  "/ip/hotspot/user": {
    verbs: withSwitch,
    params: {
      ...common,
      name: text,
      password: text,
      profile: { kind: "ref", menu: "/ip/hotspot/user/profile" },
      // The emulator has one hotspot server; `all` lets the user log in on any.
      server: { kind: "ref", menu: "/ip/hotspot", words: ["all", "hotspot1"] },
      "limit-uptime": time,
      "limit-bytes-total": bytes,
      "limit-bytes-in": bytes,
      "limit-bytes-out": bytes,
      "mac-address": { kind: "mac" },
      address: ip,
      email: text,
      routes: text,
      disabled: bool,
    },
    unique: { param: "name", duplicate: "failure: already have user with this name for this server" },
    // `uptime` and the byte counters are read-only: what sessions of this user have used so far.
    defaults: {
      server: "all",
      profile: "default",
      password: "",
      disabled: "false",
      uptime: "0s",
      "bytes-in": "0",
      "bytes-out": "0",
    },
  },
  // What a hotspot lets through before login (the captive portal's host: src/portal/walled-garden.ts).
  "/ip/hotspot/walled-garden": {
    verbs: withSwitch,
    params: {
      ...common,
      action: { kind: "enum", values: ["allow", "deny"] },
      "dst-host": text,
      "dst-port": text,
      "dst-address": ip,
      "src-address": ip,
      path: text,
      server: text,
      method: text,
      disabled: bool,
    },
    defaults: { action: "allow", disabled: "false" },
  },
  "/ip/hotspot/walled-garden/ip": {
    verbs: withSwitch,
    params: {
      ...common,
      action: { kind: "enum", values: ["accept", "drop", "reject"] },
      "dst-address": ip,
      "dst-port": text,
      "src-address": ip,
      protocol: text,
      server: text,
      disabled: bool,
    },
    defaults: { action: "accept", disabled: "false" },
  },
  "/ip/hotspot/user/profile": {
    verbs: readWrite,
    // No `comment` here: RouterOS has none on hotspot user profiles.
    params: {
      name: text,
      "rate-limit": rateLimit,
      "shared-users": { kind: "int", min: 1, words: ["unlimited"] },
      "session-timeout": time,
      "idle-timeout": timeOrNone,
      "keepalive-timeout": timeOrNone,
      "status-autorefresh": time,
      "mac-cookie-timeout": time,
      "add-mac-cookie": bool,
      "transparent-proxy": bool,
      "address-pool": text,
      "address-list": text,
      "on-login": text,
      "on-logout": text,
      "open-status-page": { kind: "enum", values: ["always", "http-login"] },
      "incoming-filter": text,
      "outgoing-filter": text,
      "incoming-packet-mark": text,
      "outgoing-packet-mark": text,
      "parent-queue": text,
      "queue-type": text,
      "insert-queue-before": text,
      advertise: bool,
      "advertise-url": text,
      "advertise-interval": text,
      "advertise-timeout": text,
    },
    unique: { param: "name", duplicate: "failure: profile with the same name already exists" },
    defaults: { "shared-users": "1" },
    builtins: [{ name: "default" }],
    usedBy: [{ menu: "/ip/hotspot/user", param: "profile" }],
  },
  "/ip/hotspot/active": {
    verbs: sessions,
    params: {},
    defaults: { server: "hotspot1", address: "", "mac-address": "", uptime: "0s" },
  },
};

/** Arguments `print` takes besides queries; they change nothing the emulator returns except `count-only`. */
export const printArguments = new Set([".proplist", "detail", "stats", "without-paging", "count-only"]);
