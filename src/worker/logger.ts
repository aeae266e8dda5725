import { SECRET_LOG_KEYS } from "../log-secrets.ts";
import type { Logger } from "../logger.ts";

const secretKeys = new Set(SECRET_LOG_KEYS);

const levels = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 } as const;
type Level = keyof typeof levels;

/** An error as logged: name and message (a database error's bound parameters cut off), stack, cause. */
function errorFields(error: unknown, depth = 0): unknown {
  if (!(error instanceof Error)) return error;
  const message = error.message
    .replace(/\nparams:[\s\S]*$/, "")
    .replace(/=\(([^)]*)\)/g, "=(…)")
    .replace(/Failing row contains \([\s\S]*\)/g, "Failing row contains (…)");
  const out: Record<string, unknown> = { type: error.name, message };
  const code = (error as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (error.stack) out.stack = error.stack.replace(error.message, message);
  if (error.cause !== undefined && depth < 3) out.cause = errorFields(error.cause, depth + 1);
  return out;
}

function clean(value: unknown, depth: number): unknown {
  if (value instanceof Error) return errorFields(value);
  if (!value || typeof value !== "object" || Array.isArray(value) || depth > 4) return value;
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value))
    out[key] = secretKeys.has(key) ? "[redacted]" : clean(field, depth + 1);
  return out;
}

/**
 * A logger for the Worker with the part of pino's API the routes and jobs use (`info(obj, msg)`,
 * `info(msg)`, `child(bindings)`): one JSON line per entry on the console, which Workers Logs and
 * `wrangler tail` collect. pino itself (its transports and worker threads) is left to Node.
 */
export function createWorkerLogger(level: string = "info", bindings: Record<string, unknown> = {}): Logger {
  const threshold = levels[level as Level] ?? (level === "silent" ? Number.POSITIVE_INFINITY : levels.info);
  const write = (name: Level) => (first?: unknown, second?: unknown) => {
    if (levels[name] < threshold) return;
    const fields =
      typeof first === "object" && first !== null ? (clean(first, 0) as Record<string, unknown>) : {};
    const msg = typeof first === "string" ? first : typeof second === "string" ? second : undefined;
    const line = JSON.stringify({ level: levels[name], time: Date.now(), ...bindings, ...fields, msg });
    if (levels[name] >= levels.error) console.error(line);
    else if (levels[name] >= levels.warn) console.warn(line);
    else console.log(line);
  };
  const logger = {
    level,
    trace: write("trace"),
    debug: write("debug"),
    info: write("info"),
    warn: write("warn"),
    error: write("error"),
    fatal: write("fatal"),
    silent: () => {},
    child: (more: Record<string, unknown>) => createWorkerLogger(level, { ...bindings, ...more }),
    isLevelEnabled: (name: string) => (levels[name as Level] ?? 0) >= threshold,
  };
  return logger as unknown as Logger;
}
