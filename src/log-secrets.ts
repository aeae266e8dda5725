/**
 * Keys whose values never reach a log line, wherever they are nested: one list for the Node
 * logger (pino's redaction, src/logger.ts) and the Worker's (src/worker/logger.ts), which cannot
 * load pino.
 */
export const SECRET_LOG_KEYS: readonly string[] = [
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
  "connectionString",
];
