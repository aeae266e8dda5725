import pino, { type Logger } from "pino";

/** Keys whose values never reach a log line, wherever they are nested. */
const secretKeys = [
  "password",
  "passwordEncrypted",
  "secret",
  "token",
  "apiKey",
  "apikey",
  "authorization",
  "Authorization",
  "passkey",
  "Password",
  "consumerSecret",
  "SECRET_KEY",
  "DATABASE_URL",
];

export function createLogger(level = "info", destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    redact: {
      paths: [...secretKeys, ...secretKeys.map((k) => `*.${k}`), ...secretKeys.map((k) => `*.*.${k}`)],
      censor: "[redacted]",
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

export type { Logger };
