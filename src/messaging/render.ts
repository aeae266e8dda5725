import { formatKes } from "../billing/money.ts";
import { en, type MessageKey } from "./catalog/en.ts";
import { sw } from "./catalog/sw.ts";

export type Language = "en" | "sw";
export const catalogs: Record<Language, Record<MessageKey, string>> = { en, sw };
export type { MessageKey };

export type Params = Record<string, string | number | null | undefined>;

const months: Record<Language, string[]> = {
  en: ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
  sw: ["Jan", "Feb", "Mac", "Apr", "Mei", "Jun", "Jul", "Ago", "Sep", "Okt", "Nov", "Des"],
};

const dayParts = new Map<string, Intl.DateTimeFormat>();

/** `25 Nov 2026` in the ISP's time zone; month names built in so the output stays ASCII. */
export function formatDate(language: Language, at: Date, timezone = "Africa/Nairobi"): string {
  let format = dayParts.get(timezone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-GB", {
      timeZone: timezone,
      day: "numeric",
      month: "numeric",
      year: "numeric",
    });
    dayParts.set(timezone, format);
  }
  const parts = format.formatToParts(at);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? "0");
  return `${get("day")} ${months[language][get("month") - 1] ?? "?"} ${get("year")}`;
}

const isoInstant = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/;
const clockParts = new Map<string, Intl.DateTimeFormat>();

/** `25 Nov 2026 14:05` in the ISP's time zone. */
export function formatDateTime(language: Language, at: Date, timezone = "Africa/Nairobi"): string {
  let format = clockParts.get(timezone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-GB", {
      timeZone: timezone,
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    });
    clockParts.set(timezone, format);
  }
  return `${formatDate(language, at, timezone)} ${format.format(at)}`;
}

/** When a bill falls due, `days` ahead of now (behind, for a reminder configured after the due date). */
const dueIn: Record<Language, (days: number) => string> = {
  en: (days) =>
    days === 0
      ? "is due today"
      : days === 1
        ? "is due tomorrow"
        : days > 1
          ? `is due in ${days} days`
          : days === -1
            ? "was due yesterday"
            : `was due ${-days} days ago`,
  sw: (days) =>
    days === 0
      ? "inapaswa kulipwa leo"
      : days === 1
        ? "inapaswa kulipwa kesho"
        : days > 1
          ? `inapaswa kulipwa baada ya siku ${days}`
          : days === -1
            ? "ilipaswa kulipwa jana"
            : `ilipaswa kulipwa siku ${-days} zilizopita`,
};

/**
 * How a parameter reads: names ending in `Cents` are amounts (`KES 1,500`), names ending in `At`
 * are instants (ISO strings or Dates, shown as a date), `days` (until a bill's due date, and only
 * that: another count of days takes another name) says when it falls due (`is due tomorrow`,
 * `was due 2 days ago`), anything else as it is.
 */
export function formatParam(language: Language, name: string, value: unknown, timezone?: string): string {
  if (value === null || value === undefined) return "";
  if (name === "days" && typeof value === "number" && Number.isSafeInteger(value))
    return dueIn[language](value);
  if (name.endsWith("Cents") && typeof value === "number" && Number.isSafeInteger(value))
    return formatKes(value);
  if (name.endsWith("Cents") && typeof value === "string" && /^-?\d+$/.test(value))
    return formatKes(Number(value));
  if (name.endsWith("At")) {
    const date = value instanceof Date ? value : new Date(String(value));
    if (!Number.isNaN(date.getTime())) return formatDate(language, date, timezone);
  }
  // An instant under another name (a voucher's `validity` end) needs its time of day too.
  if (typeof value === "string" && isoInstant.test(value)) {
    const date = new Date(value);
    if (!Number.isNaN(date.getTime())) return formatDateTime(language, date, timezone);
  }
  return String(value);
}

/** The catalog string `key` in `language` with `{name}` placeholders filled from `params`. */
export function translate(
  language: Language,
  key: MessageKey,
  params: Params = {},
  timezone?: string,
): string {
  const template = catalogs[language][key] ?? catalogs.en[key];
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in params ? formatParam(language, name, params[name], timezone) : whole,
  );
}

/**
 * Parameters whose values are secrets: the password a subscriber's router dials with, and the code
 * that links a chat to an account (whoever reads it can see the account in their own chat). They go
 * to their owner and nowhere else: stored sealed, masked in any rendering for a log. A voucher's
 * `code` is no secret of this kind: the admin's list of failed messages shows it, to hand it over.
 */
export function secretParams(template: string): readonly string[] {
  return template === "chat_link_code" ? ["password", "code"] : ["password"];
}
const MASK = "********";

/** `text` with every secret parameter's value masked (an error message that might quote the SMS). */
export function maskSecrets(text: string, template: string, params: Params): string {
  let masked = text;
  for (const name of secretParams(template)) {
    const value = params[name];
    if (typeof value === "string" && value !== "") masked = masked.split(value).join(MASK);
  }
  return masked;
}

/**
 * Why an M-Pesa prompt was not paid, in `language`: for a Daraja result code, or `unsent` (the
 * prompt never went out); none for a code the catalogs do not name.
 */
export function failureReason(language: Language, code: number | string): string | undefined {
  const key = `reason.${code}`;
  return code !== "other" && key in en ? catalogs[language][key as MessageKey] : undefined;
}

/**
 * A failure's reason for a reader of `language` when its code is not in the catalogs: English keeps
 * the stored reason (Daraja's own description, in English), another language names the code rather
 * than quote English at its reader.
 */
function unnamedReason(language: Language, code: number | string): string | undefined {
  return language === "en" ? undefined : translate(language, "reason.other", { code: String(code) });
}

export function isSmsTemplate(template: string): boolean {
  return `sms.${template}` in en;
}

/** What messages say of the ISP: its name, where to pay and whom to call (see `signingOf` in config.ts). */
export interface Signing {
  /** `{isp}`: signs every message. */
  isp: string;
  /** The paybill in `{payTo}`, where a message asks for money. */
  paybill?: string;
  /** A till (Buy Goods) instead of a paybill: its payments carry no account number. */
  till?: string;
  /** The menu's USSD code: with a till, `{payTo}` says to dial it (its prompt names the account). */
  ussdCode?: string;
  /** `{support}`: the number to call. */
  support?: string;
  timezone?: string;
}

/**
 * Every value a catalog message may name: the message's own parameters and what is derived from them
 * and the signing (`isp`, `payTo`, `support`, the translated `reason`). A rendering and a WhatsApp
 * template's parameters read the same dictionary, so a template never says less than the SMS. With
 * `masked`, secret parameters are `********`.
 */
export function messageValues(
  language: Language,
  template: string,
  params: Params,
  options: Signing & { masked?: boolean },
): Params {
  // A failure's reason in the reader's language, where its code is known (the stored `reason` is
  // English, as M-Pesa's result was logged).
  const code = params.reasonCode;
  const reason =
    typeof code === "number" || typeof code === "string"
      ? (failureReason(language, code) ?? unnamedReason(language, code))
      : undefined;
  const secret = secretParams(template);
  const shown = options.masked
    ? Object.fromEntries(Object.entries(params).map(([k, v]) => [k, secret.includes(k) ? MASK : v]))
    : params;
  return {
    isp: options.isp,
    payTo: payTo(language, params.account, options),
    support: options.support ?? "",
    ...shown,
    ...(reason ? { reason } : {}),
  };
}

/**
 * An outbox message as the recipient reads it, or null when the template is unknown. With `masked`,
 * secret parameters are shown as `********`: the form a log may carry.
 */
export function renderSms(
  language: Language,
  template: string,
  params: Params,
  options: Signing & { masked?: boolean },
): string | null {
  if (!isSmsTemplate(template)) return null;
  return translate(
    language,
    `sms.${template}` as MessageKey,
    messageValues(language, template, params, options),
    options.timezone,
  );
}

/**
 * Where to pay, as an SMS asking for money says it: the paybill and the account to type; with a till
 * (which takes no account, so its payments wait for an admin to match them) the menu's USSD code
 * when there is one, else the till; with neither, the account alone.
 */
function payTo(language: Language, account: Params[string], signing: Signing): string {
  if (signing.till && signing.ussdCode) return `${language === "sw" ? "piga" : "dial"} ${signing.ussdCode}`;
  if (signing.till) return `Buy Goods till ${signing.till}`;
  const accountWord = language === "sw" ? "akaunti" : "account";
  return `${signing.paybill ? `paybill ${signing.paybill}, ` : ""}${accountWord} ${account ?? ""}`.trim();
}

/** The placeholder names a catalog string uses (for the catalog consistency test). */
export function placeholders(text: string): string[] {
  return [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!).sort();
}
