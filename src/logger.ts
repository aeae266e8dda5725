import pino, { type Logger } from "pino";
import { SECRET_LOG_KEYS } from "./log-secrets.ts";

/**
 * Errors as logged: a database error names its statement but never its parameters (drizzle puts
 * every bound value, phone numbers and passwords included, into its message), and a constraint's
 * detail keeps the key's name but not its value, nor the failing row.
 */
export function safeError(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const serialized = pino.stdSerializers.errWithCause(error) as unknown as Record<string, unknown>;
  return scrub(serialized, 0);
}

/**
 * What an error carries of the request that failed is left out: a query's parameters, and a Bot
 * API call's `payload` (grammY's GrammyError), which holds a webhook's `secret_token` or a
 * message's text (a router login, a voucher code).
 */
const REQUEST_KEYS = new Set(["params", "parameters", "args", "payload"]);

/** A Telegram bot token (`<bot id>:<secret>`), as a failed request's URL shows it (`/bot<token>/`). */
const BOT_TOKEN = /\d{5,}:[A-Za-z0-9_-]{30,}/g;

function scrub(value: Record<string, unknown>, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) {
    if (REQUEST_KEYS.has(key)) continue;
    if (typeof field === "string") {
      out[key] = field
        .replace(BOT_TOKEN, "<bot token>")
        .replace(/\nparams:[\s\S]*$/, "")
        .replace(/=\(([^)]*)\)/g, "=(…)")
        .replace(/Failing row contains \([\s\S]*\)/g, "Failing row contains (…)");
    } else if (field && typeof field === "object" && !Array.isArray(field) && depth < 4) {
      out[key] = scrub(field as Record<string, unknown>, depth + 1);
    } else {
      out[key] = field;
    }
  }
  return out;
}

export function createLogger(level = "info", destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    serializers: { err: safeError, error: safeError },
    redact: {
      paths: [
        ...SECRET_LOG_KEYS,
        ...SECRET_LOG_KEYS.map((k) => `*.${k}`),
        ...SECRET_LOG_KEYS.map((k) => `*.*.${k}`),
      ],
      censor: "[redacted]",
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

export type { Logger };
