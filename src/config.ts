import { Cron } from "croner";
import { z } from "zod";
import type { BillingSettings } from "./billing/context.ts";
import { isAddressOrRange } from "./lib/address-ranges.ts";
import { isCountryCode } from "./lib/phone.ts";
import { parseSecretKey } from "./lib/secret-box.ts";
import { AREA_NAME_MAX } from "./menu/engine.ts";
import type { Signing } from "./messaging/render.ts";
import { type Mode, resolveMode } from "./mode.ts";

const bool = z
  .enum(["true", "false", "1", "0", "yes", "no"])
  .transform((v) => v === "true" || v === "1" || v === "yes");
/** A zone name the runtime knows (`Africa/Nairobi`): dates of bills and SMS are counted in it. */
function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** A schedule croner reads (five or six cron fields); given no function, croner only parses it. */
function isCronPattern(pattern: string): boolean {
  try {
    new Cron(pattern).stop();
    return true;
  } catch {
    return false;
  }
}

const csvIntegers = z
  .string()
  .regex(/^-?\d+(,-?\d+)*$/, "a comma-separated list of whole numbers")
  .transform((v) => v.split(",").map(Number));

/**
 * Every setting Tandao reads, parsed once at start. Nothing else reads `process.env`.
 * Empty strings count as unset so that `FOO=` in an env file does not override a default.
 */
const csvList = z.string().transform((v) =>
  v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean),
);

/** Addresses and CIDR ranges: an entry that matches nothing (a name, a typo) stops the start. */
const csvAddresses = csvList.refine(
  (entries) => entries.every(isAddressOrRange),
  "IP addresses or ranges (41.90.1.5, 196.201.214.0/24), comma-separated",
);

/** One place a newcomer may sign up in, and the router that serves it (null: an admin assigns one). */
export interface SignupArea {
  name: string;
  routerId: number | null;
}

/**
 * `Kahawa West=1,Roysambu=2` (area = router id) or names only (`Kahawa West,Roysambu`);
 * `none` turns self sign-up off (an empty value would fall back to the default).
 */
const signupAreas = z
  .string()
  .transform((v) =>
    v.trim().toLowerCase() === "none"
      ? []
      : v
          .split(",")
          .map((entry) => entry.split("="))
          .filter(([name]) => name?.trim())
          .map(([name, router]) => ({
            name: name!.trim(),
            routerId: router?.trim() ? Number(router.trim()) : null,
          })),
  )
  .refine(
    (areas) => areas.every((a) => a.routerId === null || (Number.isInteger(a.routerId) && a.routerId > 0)),
    "comma-separated areas, each optionally `=router id`, e.g. Kahawa West=1,Roysambu=2",
  )
  .refine(
    (areas) => areas.every((a) => a.name.length <= AREA_NAME_MAX),
    `each area's name at most ${AREA_NAME_MAX} characters (menus show it whole)`,
  );

function isSecretKey(text: string): boolean {
  try {
    parseSecretKey(text);
    return true;
  } catch {
    return false;
  }
}

export const configSchema = z.object({
  /** `sandbox` (built-in fakes) or `production` (real services only); see src/mode.ts. */
  TANDAO_MODE: z.enum(["sandbox", "production"]).optional(),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  /** Address the HTTP server binds to; unset: 127.0.0.1 in sandbox, every interface in production. */
  HOST: z.string().optional(),
  /**
   * Addresses of the reverse proxies in front of the app: only from them is `X-Forwarded-For`
   * believed, to find the client's address for every allowlist.
   */
  TRUST_PROXY: csvAddresses.default([]),
  DATA_DIR: z.string().min(1).default("./data"),
  DATABASE_URL: z.string().url().optional(),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  /**
   * Bearer token of `GET /metrics` (Prometheus text; ≥ 16 characters, e.g. `openssl rand -hex 24`).
   * Unset: `/metrics` answers 404.
   */
  METRICS_TOKEN: z.string().min(16).optional(),
  /** 32 bytes, hex or base64: encrypts router passwords at rest. Unset in sandbox: a key is kept in DATA_DIR. */
  SECRET_KEY: z
    .string()
    .refine(isSecretKey, "must be 32 bytes, as 64 hex digits or base64 (openssl rand -hex 32)")
    .optional(),
  TIMEZONE: z.string().refine(isTimeZone, "a time zone name, e.g. Africa/Nairobi").default("Africa/Nairobi"),
  /** Public base URL of this service, used to build callback URLs handed to Daraja. */
  PUBLIC_URL: z.string().url().optional(),
  ISP_NAME: z.string().default("Tandao Net"),
  SUPPORT_PHONE: z.string().default("0700000000"),
  /** ISO country codes whose phone numbers the subscriber menu serves; others are told it is not offered. */
  SERVED_COUNTRIES: z
    .string()
    .transform((v) => v.split(",").map((c) => c.trim().toUpperCase()))
    .refine((codes) => codes.every(isCountryCode), "comma-separated ISO country codes, e.g. KE or KE,UG")
    .default(["KE"]),

  /** Hours before a period starts that its invoice is issued (must cover the earliest reminder). */
  INVOICE_LEAD_HOURS: z.coerce.number().int().min(0).default(96),
  /** Reminder offsets in days relative to the due date (negative = before). */
  DUNNING_REMINDER_DAYS: csvIntegers.default([-3, -1, 0]),
  DUNNING_GRACE_DAYS: z.coerce.number().int().min(0).default(1),
  /** `period_end` (default) or `immediate` with a prorated credit. */
  DOWNGRADE_MODE: z.enum(["period_end", "immediate"]).default("period_end"),
  UNSOLD_VOUCHER_DAYS: z.coerce.number().int().min(1).default(90),
  SCHEDULER: bool.default(true),

  /** Safaricom's `production` host (default) or its developer `test` host. */
  MPESA_ENV: z.enum(["production", "test"]).default("production"),
  MPESA_BASE_URL: z.string().url().optional(),
  MPESA_CONSUMER_KEY: z.string().optional(),
  MPESA_CONSUMER_SECRET: z.string().optional(),
  MPESA_SHORTCODE: z.string().optional(),
  MPESA_PASSKEY: z.string().optional(),
  MPESA_TILL: z.string().optional(),
  /** Secret path segment on the callback URLs. */
  MPESA_CALLBACK_TOKEN: z.string().optional(),
  MPESA_ALLOWED_IPS: csvAddresses.optional(),
  MPESA_PENDING_RECOVERY_SECONDS: z.coerce.number().int().min(10).default(120),
  /** A push with no result this long after it was sent times out (a later success is still credited). */
  MPESA_PENDING_TIMEOUT_SECONDS: z.coerce.number().int().min(30).default(900),
  /** Paybill validation rejects account numbers that match no customer (default: accept, queue as unmatched). */
  MPESA_C2B_REJECT_UNKNOWN: bool.default(false),
  /** Registers the C2B confirmation/validation URLs with Daraja at start. */
  MPESA_REGISTER_C2B: bool.default(false),
  STK_LIMIT_COUNT: z.coerce.number().int().min(1).default(3),
  STK_LIMIT_WINDOW_SECONDS: z.coerce.number().int().min(1).default(300),
  /** Prompts allowed per target account within STK_LIMIT_WINDOW_SECONDS, whoever asks. */
  STK_LIMIT_PER_ACCOUNT: z.coerce.number().int().min(1).default(5),
  /**
   * Prompts allowed per hotspot and client address within STK_LIMIT_WINDOW_SECONDS (the captive
   * portal): a whole site's phones reach the portal from one address.
   */
  STK_LIMIT_PER_SOURCE: z.coerce.number().int().min(1).default(30),
  /** Prompts allowed in total per minute, across all phones and channels. */
  STK_LIMIT_TOTAL_PER_MINUTE: z.coerce.number().int().min(1).default(120),

  AT_USERNAME: z.string().optional(),
  AT_API_KEY: z.string().optional(),
  AT_SENDER_ID: z.string().optional(),
  /** Where SMS are posted; defaults to Africa's Talking's production (or sandbox) host. */
  AT_SMS_URL: z.string().url().optional(),
  /** Secret path segment of the USSD callback URL (`/ussd/<token>`); unset: `/ussd`. */
  USSD_TOKEN: z.string().optional(),
  /** The code subscribers dial for the menu, e.g. `*384*123#`: with a till, SMS asking for money say to dial it. */
  USSD_CODE: z
    .string()
    .regex(/^\*[0-9*]+#$/, "a USSD code such as *384*123#")
    .optional(),
  /** Production without USSD_TOKEN: only with an allowlist of the gateway's addresses. */
  USSD_NO_TOKEN: bool.default(false),
  /** When set, USSD requests from any other (client) address are refused. */
  USSD_ALLOWED_IPS: csvAddresses.optional(),
  /** An SMS is given up (status `dead`, reason kept) after this many failed sends. */
  SMS_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(8),

  TELEGRAM_BOT_TOKEN: z.string().optional(),
  /** Telegram sends it with every webhook update; updates without it are refused (≥ 16 characters). */
  TELEGRAM_WEBHOOK_SECRET: z.string().min(16).optional(),
  /**
   * The subscriber bot's @username (Telegram's rule: 5–32 letters, digits or `_`, ending in `bot`).
   * The Worker builds the bot from the token and this name instead of asking Telegram's `getMe` on
   * every request (`telegramBotInfo`); the Node service asks once at start and does not read it.
   */
  TELEGRAM_BOT_USERNAME: z
    .string()
    .trim()
    .regex(/^@?[A-Za-z0-9_]{2,29}bot$/i, "the bot's @username: 5–32 letters, digits or _, ending in bot")
    .transform((v) => v.replace(/^@/, ""))
    .optional(),
  /** Sandbox without a bot token: the fake Bot API (and its `/sandbox/updates` for curl) listens here. */
  TELEGRAM_SANDBOX_PORT: z.coerce.number().int().min(0).max(65535).default(3081),
  /** The admin bot (a second Telegram bot, for the ISP's staff): its token and webhook secret. */
  TELEGRAM_ADMIN_BOT_TOKEN: z.string().optional(),
  TELEGRAM_ADMIN_WEBHOOK_SECRET: z.string().min(16).optional(),
  /** The Telegram user id of the first owner; owners add the other admins from the chat. */
  TELEGRAM_OWNER_ID: z.coerce.number().int().positive().optional(),
  /** Group chats (ids, comma-separated, usually negative) where admins may give commands. */
  TELEGRAM_ADMIN_CHATS: z
    .string()
    .optional()
    .transform((value, context) => {
      const ids = (value ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      for (const id of ids)
        if (!/^-?\d{1,20}$/.test(id)) context.addIssue({ code: "custom", message: `not a chat id: ${id}` });
      return ids.map(Number);
    }),
  /** The hour (0–23, ISP's time zone) of the admin chat's daily summary; unset: none. */
  ADMIN_DAILY_SUMMARY_HOUR: z.coerce.number().int().min(0).max(23).optional(),
  /** Sandbox without an admin bot token: the admin bot's fake Bot API listens here. */
  TELEGRAM_ADMIN_SANDBOX_PORT: z.coerce.number().int().min(0).max(65535).default(3083),
  /** Sandbox without Cloud API credentials: the fake Graph API (and its `/sandbox/messages`) listens here. */
  WHATSAPP_SANDBOX_PORT: z.coerce.number().int().min(0).max(65535).default(3082),

  /** `on`: the WhatsApp Web channel (a linked device of the ISP's own number, through Chromium). */
  WHATSAPP_WEB: z.enum(["on", "off"]).default("off"),
  /** The system's Chromium for WhatsApp Web (Debian: `apt-get install chromium`); never downloaded. */
  WHATSAPP_WEB_CHROMIUM: z.string().min(1).default("/usr/bin/chromium"),
  /** Link with a pairing code for this number (international, e.g. 254712345678) instead of a QR. */
  WHATSAPP_WEB_PAIRING_PHONE: z
    .string()
    .regex(/^\+?\d{7,15}$/, "a phone number in international form, e.g. 254712345678")
    .transform((v) => v.replace(/^\+/, ""))
    .optional(),

  /** WhatsApp Cloud API: a system user's access token (sent as `Authorization: Bearer`). */
  WHATSAPP_CLOUD_TOKEN: z.string().optional(),
  /** The business phone number's id (not the number itself): messages are sent from it. */
  WHATSAPP_CLOUD_PHONE_NUMBER_ID: z.string().regex(/^\d+$/, "the numeric phone number id").optional(),
  /** The Meta app's secret: webhook bodies without its `X-Hub-Signature-256` are refused. */
  WHATSAPP_CLOUD_APP_SECRET: z.string().optional(),
  /** Chosen by us and given to Meta for the webhook handshake (≥ 16 characters). */
  WHATSAPP_CLOUD_VERIFY_TOKEN: z.string().min(16).optional(),
  /**
   * Approved templates for notices outside WhatsApp's 24-hour window:
   * `payment_received=tandao_receipt:amountCents|receipt, suspended=tandao_suspended:amountCents|payTo`.
   * A notice with no template here goes by SMS instead.
   */
  WHATSAPP_CLOUD_TEMPLATES: z.string().optional(),
  /** Graph API base with its version; another address only for a fake. */
  WHATSAPP_CLOUD_GRAPH_URL: z.string().url().default("https://graph.facebook.com/v21.0"),

  /** The captive portal's colour (`#rrggbb`); adjusted where needed so text stays readable. */
  PORTAL_BRAND_COLOR: z
    .string()
    .regex(/^#[0-9a-f]{6}$/i, "a colour as #rrggbb")
    .optional(),
  /** The address hotspot clients reach the portal at (walled garden); default PUBLIC_URL. */
  PORTAL_URL: z.string().url().optional(),
  /**
   * The hotspots' login host names (a hotspot profile's DNS name): the portal logs a paid device in
   * only at a private address or one of these; elsewhere it shows the code to type.
   */
  HOTSPOT_LOGIN_HOSTS: csvList.default([]),
  /**
   * Where a printed voucher's QR code logs in: the hotspot's DNS name or address (a hotspot
   * profile's `dns-name`); unset, the hotspot wizard's default, http://10.5.50.1.
   */
  HOTSPOT_LOGIN_URL: z.string().url().optional(),

  /** E.164 phone of the ISP's admin: receives `admin_alert` messages (e.g. provisioning given up). */
  ADMIN_PHONE: z.string().optional(),
  /** Areas a newcomer may choose when signing up from the menu (see `signupAreas`). */
  // Sandbox-friendly: names only, so a sign-up needs no router to exist yet.
  SIGNUP_AREAS: signupAreas.default([
    { name: "Kahawa West", routerId: null },
    { name: "Roysambu", routerId: null },
    { name: "Zimmerman", routerId: null },
  ]),
  /** When the routers are compared with the database and repaired (croner pattern). */
  RECONCILE_CRON: z
    .string()
    .refine(isCronPattern, "a cron schedule of 5 or 6 fields, e.g. */15 * * * *")
    .default("*/15 * * * *"),
  /** Delivery attempts of one provisioning command before it is given up (and the admin alerted). */
  PROVISIONING_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(8),
  /**
   * At most 30 s: a provisioning command is written only while its lease outlives it by 45 s
   * (network/worker.ts, LEASE_SAFETY_MS), or a late command could overwrite a newer state.
   */
  ROUTER_COMMAND_TIMEOUT_MS: z.coerce.number().int().min(100).max(30_000).default(10_000),
  /** A router that cannot be reached is asked this often whether it is back; its queue goes out then. */
  ROUTER_PROBE_SECONDS: z.coerce.number().int().min(1).default(15),
});

export type Config = z.infer<typeof configSchema> & { PUBLIC_URL: string; mode: Mode };

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const cleaned = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v !== ""),
  ) as Record<string, string>;
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new Error(`Invalid configuration: ${problems}`);
  }
  // Callbacks come back to this process unless a public address is configured.
  const config = {
    ...parsed.data,
    PUBLIC_URL: parsed.data.PUBLIC_URL ?? `http://127.0.0.1:${parsed.data.PORT}`,
    mode: "sandbox" as Mode,
  };
  config.mode = resolveMode(config, cleaned);
  return config;
}

/**
 * What messages say of the ISP (`{isp}`, `{payTo}`, `{support}`, dates in its time zone). Where to
 * pay: the paybill (`MPESA_SHORTCODE`) with the account to type, or with a till (`MPESA_TILL`), whose
 * payments carry no account, the menu (`USSD_CODE`), which pushes a prompt for the right account.
 */
export function signingOf(config: Config): Signing {
  return {
    isp: config.ISP_NAME,
    paybill: config.MPESA_TILL ? undefined : config.MPESA_SHORTCODE,
    till: config.MPESA_TILL,
    ussdCode: config.USSD_CODE,
    support: config.SUPPORT_PHONE,
    timezone: config.TIMEZONE,
  };
}

/** Sandbox mode: every outside service is a built-in fake (see src/mode.ts). */
export function isSandbox(config: Config): boolean {
  return config.mode === "sandbox";
}

/** The billing core's settings from the configuration (the app and the CLI alike). */
export function billingSettingsFrom(config: Config): BillingSettings {
  return {
    timezone: config.TIMEZONE,
    invoiceLeadHours: config.INVOICE_LEAD_HOURS,
    reminderDays: config.DUNNING_REMINDER_DAYS,
    graceDays: config.DUNNING_GRACE_DAYS,
    downgradeMode: config.DOWNGRADE_MODE,
    unsoldVoucherDays: config.UNSOLD_VOUCHER_DAYS,
  };
}
