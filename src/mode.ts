import type { Config } from "./config.ts";

/**
 * The one word for how this process runs:
 * - `sandbox`: every outside service is a built-in fake (Daraja, Africa's Talking, a RouterOS
 *   router), so the whole system can be tried on one machine. Nothing reaches the outside world.
 * - `production`: real services only; no fake is ever started.
 * `TANDAO_MODE` says which. Unset, it is `sandbox` only when no outside credential of any kind is
 * set: a half-configured production must not quietly become a sandbox that "pays" every push.
 */
export type Mode = "sandbox" | "production";

/** Settings that speak to an outside service: any one of them means someone meant production. */
const outsideCredentials = [
  "MPESA_CONSUMER_KEY",
  "MPESA_CONSUMER_SECRET",
  "MPESA_SHORTCODE",
  "MPESA_PASSKEY",
  "MPESA_TILL",
  "AT_USERNAME",
  "AT_API_KEY",
  "AT_SENDER_ID",
  "TELEGRAM_BOT_TOKEN",
  "TELEGRAM_ADMIN_BOT_TOKEN",
  "WHATSAPP_CLOUD_TOKEN",
  "WHATSAPP_CLOUD_APP_SECRET",
] as const satisfies readonly (keyof Config)[];

/** What production cannot run without: the credentials of every channel it serves, and its secrets. */
const requiredInProduction = [
  "MPESA_CONSUMER_KEY",
  "MPESA_CONSUMER_SECRET",
  "MPESA_SHORTCODE",
  "MPESA_PASSKEY",
  "MPESA_CALLBACK_TOKEN",
  "AT_USERNAME",
  "AT_API_KEY",
  "SECRET_KEY",
  "PUBLIC_URL",
] as const satisfies readonly (keyof Config)[];

export class ModeError extends Error {
  constructor(readonly problems: string[]) {
    super(`Cannot start: ${problems.join("; ")}`);
    this.name = "ModeError";
  }
}

/**
 * The mode this configuration asks for, or a ModeError naming every setting that is missing or
 * that contradicts it (all of them at once, so an operator fixes the env file in one go).
 */
export function resolveMode(config: Config, env: Record<string, string | undefined> = {}): Mode {
  const present = (key: string) => {
    const value = (config as Record<string, unknown>)[key];
    return value !== undefined && value !== null && value !== "";
  };
  const credentials = outsideCredentials.filter(present);
  const asked = config.TANDAO_MODE;
  if (asked === undefined) {
    if (credentials.length === 0) return "sandbox";
    throw new ModeError([
      `outside credentials are set (${credentials.join(", ")}) but TANDAO_MODE is not: set TANDAO_MODE=production (and every production setting), or remove them for the sandbox`,
    ]);
  }
  if (asked === "sandbox") {
    if (credentials.length > 0)
      throw new ModeError([
        `TANDAO_MODE=sandbox runs only the built-in fakes, but outside credentials are set (${credentials.join(", ")}): remove them, or set TANDAO_MODE=production`,
      ]);
    return "sandbox";
  }
  const problems: string[] = [];
  for (const key of requiredInProduction) {
    // PUBLIC_URL gets a local default; production needs the one Daraja can reach.
    const given = key === "PUBLIC_URL" ? env.PUBLIC_URL : present(key) ? "set" : undefined;
    if (!given) problems.push(`${key} is required in production`);
  }
  if (env.PUBLIC_URL && !config.PUBLIC_URL.toLowerCase().startsWith("https://"))
    problems.push("PUBLIC_URL must be https in production (Daraja calls back over HTTPS only)");
  if (!config.USSD_TOKEN && !config.USSD_NO_TOKEN)
    problems.push(
      "USSD_TOKEN is required in production (or USSD_NO_TOKEN=true with USSD_ALLOWED_IPS listing the gateway's addresses)",
    );
  if (!config.USSD_TOKEN && config.USSD_NO_TOKEN && !config.USSD_ALLOWED_IPS?.length)
    problems.push("USSD_NO_TOKEN=true needs USSD_ALLOWED_IPS: without either, anyone can post as any phone");
  if (config.WHATSAPP_CLOUD_TOKEN)
    for (const key of [
      "WHATSAPP_CLOUD_PHONE_NUMBER_ID",
      "WHATSAPP_CLOUD_APP_SECRET",
      "WHATSAPP_CLOUD_VERIFY_TOKEN",
    ] as const)
      if (!present(key)) problems.push(`${key} is required with WHATSAPP_CLOUD_TOKEN`);
  if (config.TELEGRAM_BOT_TOKEN && !config.TELEGRAM_WEBHOOK_SECRET)
    problems.push(
      "TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_BOT_TOKEN (Telegram's webhook proves itself with it)",
    );
  if (config.TELEGRAM_ADMIN_BOT_TOKEN)
    for (const key of ["TELEGRAM_ADMIN_WEBHOOK_SECRET", "TELEGRAM_OWNER_ID"] as const)
      if (!present(key)) problems.push(`${key} is required with TELEGRAM_ADMIN_BOT_TOKEN`);
  if (problems.length > 0) throw new ModeError(problems);
  return "production";
}
