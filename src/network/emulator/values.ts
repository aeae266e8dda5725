import { formatDuration, parseDuration } from "../durations.ts";

/**
 * How RouterOS reads the values of the parameters the emulator knows, and the texts it answers
 * when one cannot be read. A value that reads is stored as the router prints it (`yes` becomes
 * `true`, `3600` becomes `1h`), so that what Tandao reads back is what a real router would show.
 */

/** The type of one parameter of a menu. */
export type ParamType =
  | { kind: "text" }
  | { kind: "bool" }
  /** One of a fixed list (`service=pppoe`). */
  | { kind: "enum"; values: readonly string[] }
  /** A time interval, or one of `words` (`none`). */
  | { kind: "time"; words?: readonly string[] }
  /** A whole number of at least `min`, or one of `words` (`unlimited`). */
  | { kind: "int"; min: number; words?: readonly string[] }
  | { kind: "rate-limit" }
  | { kind: "ip" }
  | { kind: "mac" }
  /** The name of an item of another menu (`profile=`), or one of `words` (`server=all`). */
  | { kind: "ref"; menu: string; words?: readonly string[] };

/** RouterOS's refusal: the `=message=` of its `!trap`, and its `=category=` when it sends one. */
export interface Refusal {
  message: string;
  /** 1: argument value failure (RouterOS API manual). */
  category?: number;
}

export const refusals = {
  /** RouterOS 7 names the parameter; 6.x does not. */
  unknownParameter: (name: string, namesIt: boolean): Refusal => ({
    message: namesIt ? `unknown parameter ${name}` : "unknown parameter",
  }),
  /** An enumerated value or a reference to another item that matches nothing. */
  noMatch: (name: string): Refusal => ({ message: `input does not match any value of ${name}`, category: 1 }),
  /** A value of a parsed type (time, number, rate limit, address) that does not parse. */
  invalid: (name: string): Refusal => ({ message: `invalid value for argument ${name}`, category: 1 }),
  outOfRange: (name: string, range: string): Refusal => ({
    message: `value of ${name} is out of range (${range})`,
    category: 1,
  }),
  noSuchItem: (): Refusal => ({ message: "no such item" }),
  noSuchCommand: (): Refusal => ({ message: "no such command" }),
  noSuchPrefix: (): Refusal => ({ message: "no such command prefix" }),
  inUse: (): Refusal => ({ message: "profile is in use" }),
  builtin: (): Refusal => ({ message: "cannot remove default profile" }),
};

const MAX_U64 = 18_446_744_073_709_551_615n;

/**
 * `rx[/tx] [rx-burst[/tx-burst] [rx-threshold[/tx-threshold] [rx-time[/tx-time] [priority]
 * [rx-min[/tx-min]]]]]`: rates in bits per second with an optional k, M or G; times as intervals;
 * priority 1 to 8. An empty value means no limit.
 */
export function isRateLimit(value: string): boolean {
  const text = value.trim();
  if (text === "") return true;
  const fields = text.split(/\s+/);
  if (fields.length > 6) return false;
  const rate = /^\d+(\.\d+)?[kKMG]?$/;
  const pair = (field: string, one: (part: string) => boolean) => {
    const parts = field.split("/");
    return parts.length <= 2 && parts.every((part) => part !== "" && one(part));
  };
  return fields.every((field, index) => {
    if (index === 3) return pair(field, (part) => parseDuration(part) !== null);
    if (index === 4) return /^[1-8]$/.test(field);
    return pair(field, (part) => rate.test(part));
  });
}

const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const mac = /^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/;

/**
 * Reads one value as RouterOS would: the value to store, or the refusal. `exists` tells whether a
 * menu holds an item of that name (for references).
 */
export function readValue(
  name: string,
  type: ParamType,
  raw: string,
  exists: (menu: string, name: string) => boolean,
): string | Refusal {
  switch (type.kind) {
    case "text":
      return raw;
    case "bool":
      if (raw === "yes" || raw === "true") return "true";
      if (raw === "no" || raw === "false") return "false";
      return refusals.noMatch(name);
    case "enum":
      return type.values.includes(raw) ? raw : refusals.noMatch(name);
    case "time": {
      if (type.words?.includes(raw)) return raw;
      const seconds = parseDuration(raw);
      return seconds === null ? refusals.invalid(name) : formatDuration(seconds);
    }
    case "int": {
      if (type.words?.includes(raw)) return raw;
      if (!/^\d+$/.test(raw)) return refusals.invalid(name);
      const value = BigInt(raw);
      if (value < BigInt(type.min) || value > MAX_U64) {
        return refusals.outOfRange(name, `${type.min}..${MAX_U64}`);
      }
      return value.toString();
    }
    case "rate-limit":
      return isRateLimit(raw) ? raw.trim() : refusals.invalid(name);
    case "ip":
      return ipv4.test(raw) ? raw : refusals.invalid(name);
    case "mac":
      return mac.test(raw) ? raw.toUpperCase() : refusals.invalid(name);
    case "ref":
      if (type.words?.includes(raw) || exists(type.menu, raw)) return raw;
      return refusals.noMatch(name);
  }
}

export function isRefusal(value: unknown): value is Refusal {
  return typeof value === "object" && value !== null && "message" in value;
}
