import { z } from "zod";
import type { PushOutcome, StkResult } from "../../billing/intents/settle.ts";
import { RECEIPT_PATTERN } from "../../billing/intents/statement.ts";
import { normalizePhone } from "../../lib/phone.ts";
import { storableJson } from "../../lib/well-formed.ts";
import { failureReason } from "../../messaging/render.ts";

/** M-Pesa's single-transaction limit for a phone: no authentic prompt's payment is larger. */
export const mpesaMaxCents = 250_000_00;
/**
 * A paybill also receives business and bank payments, larger than a phone may send: up to this
 * sanity bound they are recorded, held for an admin above `mpesaMaxCents`.
 */
export const paybillMaxCents = 100_000_000_00;
/** How deep a Daraja body nests (stkCallback's metadata is 5 levels); deeper is not Daraja's. */
export const maxJsonDepth = 16;

/** A result code: an integer as a JSON number or as digits in a string; nothing else passes. */
const resultCode = z.union([
  z.number().int().min(-2_147_483_648).max(2_147_483_647),
  z
    .string()
    .regex(/^-?\d{1,9}$/)
    .transform(Number),
]);

/**
 * Daraja's JSON shapes, as documented and as seen in the wild: numbers that are sometimes
 * strings, metadata items in any order, a `Balance` item without a value.
 */

export const tokenResponse = z.object({
  access_token: z.string().min(1),
  expires_in: z.union([z.string(), z.number()]).transform((v) => Number(v)),
});

export const stkPushAccepted = z.object({
  MerchantRequestID: z.string(),
  CheckoutRequestID: z.string(),
  ResponseCode: z.union([z.string(), z.number()]).transform(String),
  ResponseDescription: z.string().optional(),
  CustomerMessage: z.string().optional(),
});
export type StkPushAccepted = z.infer<typeof stkPushAccepted>;

export const stkQueryResponse = z.object({
  ResponseCode: z.union([z.string(), z.number()]).transform(String),
  ResponseDescription: z.string().optional(),
  MerchantRequestID: z.string().optional(),
  CheckoutRequestID: z.string().optional(),
  // A string in query answers, unlike in callbacks.
  ResultCode: resultCode,
  ResultDesc: z.string().optional(),
});
export type StkQueryResponse = z.infer<typeof stkQueryResponse>;

export const errorBody = z.object({
  requestId: z.string().optional(),
  errorCode: z.string(),
  errorMessage: z.string().optional(),
});

const metadataItem = z.object({ Name: z.string(), Value: z.union([z.string(), z.number()]).optional() });

export const stkCallback = z.object({
  Body: z.object({
    stkCallback: z.object({
      MerchantRequestID: z.string().optional(),
      CheckoutRequestID: z.string().min(1),
      ResultCode: resultCode,
      ResultDesc: z.string().optional().default(""),
      CallbackMetadata: z.object({ Item: z.array(metadataItem) }).optional(),
    }),
  }),
});

export interface ParsedStkCallback {
  merchantRequestId: string | null;
  checkoutRequestId: string;
  resultCode: number;
  resultDesc: string;
  receipt: string | null;
  /** Cents, from the shillings in the `Amount` item. */
  amountCents: number | null;
  phone: string | null;
  transactionDate: string | null;
}

/** Whole or decimal shillings (number or string) to cents, exactly. */
export function shillingsToCents(value: string | number): number | null {
  // Daraja sends `Amount` as a JSON number (1.00 arrives as 1): it is printed back to text with two
  // decimals and the cents are read from the digits, so no arithmetic happens in floating point.
  const text = typeof value === "number" ? value.toFixed(2) : value.trim();
  const match = /^(\d{1,12})(?:\.(\d{1,2}))?$/.exec(text);
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] ?? "0").padEnd(2, "0"));
}

/**
 * A callback's body, strictly: an integer result code, and for a success a receipt and an amount
 * within M-Pesa's limits. Anything else is null (the caller keeps the body and flags it).
 */
export function parseStkCallback(body: unknown): ParsedStkCallback | null {
  const parsed = stkCallback.safeParse(body);
  if (!parsed.success) return null;
  const cb = parsed.data.Body.stkCallback;
  const items = new Map((cb.CallbackMetadata?.Item ?? []).map((i) => [i.Name, i.Value]));
  const amount = items.get("Amount");
  const receipt = items.get("MpesaReceiptNumber");
  const phone = items.get("PhoneNumber");
  const date = items.get("TransactionDate");
  if (cb.ResultCode === 0) {
    const cents = amount === undefined ? null : shillingsToCents(amount);
    if (cents === null || cents <= 0 || cents > mpesaMaxCents) return null;
    if (receipt === undefined || !RECEIPT_PATTERN.test(String(receipt).toUpperCase())) return null;
  }
  return {
    merchantRequestId: cb.MerchantRequestID ?? null,
    checkoutRequestId: cb.CheckoutRequestID,
    resultCode: cb.ResultCode,
    resultDesc: cb.ResultDesc,
    receipt: receipt === undefined ? null : String(receipt),
    amountCents: amount === undefined ? null : shillingsToCents(amount),
    phone: phone === undefined ? null : String(phone),
    transactionDate: date === undefined ? null : String(date),
  };
}

/** Result codes that mean the payer never answered, as opposed to saying no. */
const unanswered = new Set([1037, 1019]);

/** M-Pesa's result codes in the billing core's words. */
export function pushOutcome(code: number): PushOutcome {
  if (code === 0) return "paid";
  if (code === 1032) return "cancelled";
  if (unanswered.has(code)) return "unanswered";
  return "declined";
}

/** A result code in words (the catalog's, in English, for logs and audit), else Daraja's own. */
function reasonFor(code: number, desc: string): string {
  return failureReason("en", code) ?? (desc.trim() || `M-Pesa result ${code}`);
}

/** A parsed callback as the core's push result. */
export function stkResultFromCallback(
  parsed: ParsedStkCallback,
  inboxId: number | null,
  raw: unknown,
  receivedAt?: Date,
): StkResult {
  return {
    ...(receivedAt ? { receivedAt } : {}),
    checkoutRequestId: parsed.checkoutRequestId,
    merchantRequestId: parsed.merchantRequestId,
    outcome: pushOutcome(parsed.resultCode),
    reason: parsed.resultCode === 0 ? parsed.resultDesc : reasonFor(parsed.resultCode, parsed.resultDesc),
    providerCode: parsed.resultCode,
    receipt: parsed.receipt,
    amountCents: parsed.amountCents,
    phone:
      parsed.phone === null
        ? null
        : normalizePhone(parsed.phone.startsWith("+") ? parsed.phone : `+${parsed.phone}`),
    source: "callback",
    inboxId,
    raw,
  };
}

/** A status query's answer as the core's push result (no receipt, no amount, no payer). */
export function stkResultFromQuery(checkoutRequestId: string, answer: StkQueryResponse): StkResult {
  return {
    checkoutRequestId,
    merchantRequestId: answer.MerchantRequestID ?? null,
    outcome: pushOutcome(answer.ResultCode),
    reason:
      answer.ResultCode === 0
        ? (answer.ResultDesc ?? "")
        : reasonFor(answer.ResultCode, answer.ResultDesc ?? ""),
    providerCode: answer.ResultCode,
    source: "query",
    raw: answer,
  };
}

/** Text of a JSON body, parsed only when its nesting stays within `maxDepth` (JSON's own parser and
 * printer recurse, so a deeply nested body would overflow the stack). */
export function parseJsonBounded(
  text: string,
  maxDepth = maxJsonDepth,
): { ok: true; value: unknown } | { ok: false; reason: "too_deep" | "not_json" } {
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === 92) escaped = true;
      else if (ch === 34) inString = false;
      continue;
    }
    if (ch === 34) inString = true;
    else if (ch === 123 || ch === 91) {
      if (++depth > maxDepth) return { ok: false, reason: "too_deep" };
    } else if (ch === 125 || ch === 93) depth--;
  }
  try {
    // The body is stored as jsonb and its strings in text columns, which refuse U+0000 and half a
    // surrogate pair: a payer's name holding one must not stop the payment being credited.
    return { ok: true, value: storableJson(JSON.parse(text)) };
  } catch {
    return { ok: false, reason: "not_json" };
  }
}

export const c2bBody = z.object({
  TransactionType: z.string().optional(),
  TransID: z.string().min(1),
  TransTime: z.string().optional(),
  TransAmount: z.union([z.string(), z.number()]),
  BusinessShortCode: z.union([z.string(), z.number()]).transform(String).optional(),
  BillRefNumber: z.string().optional().default(""),
  InvoiceNumber: z.string().optional(),
  OrgAccountBalance: z.union([z.string(), z.number()]).optional(),
  ThirdPartyTransID: z.string().optional(),
  MSISDN: z.union([z.string(), z.number()]).transform(String).optional(),
  FirstName: z.string().optional(),
  MiddleName: z.string().optional(),
  LastName: z.string().optional(),
});
export type C2bBody = z.infer<typeof c2bBody>;

/** Daraja's answers to a validation request. */
export const c2bAccept = { ResultCode: "0", ResultDesc: "Accepted" } as const;
export const c2bRejectAccount = { ResultCode: "C2B00012", ResultDesc: "Rejected" } as const;
export const c2bRejectAmount = { ResultCode: "C2B00013", ResultDesc: "Rejected" } as const;
export const c2bRejectOther = { ResultCode: "C2B00016", ResultDesc: "Rejected" } as const;

/** `YYYYMMDDHHmmss` in Africa/Nairobi, as Daraja wants its Timestamp. */
export function darajaTimestamp(at: Date): string {
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Africa/Nairobi",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  }).formatToParts(at);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "00";
  return `${get("year")}${get("month")}${get("day")}${get("hour")}${get("minute")}${get("second")}`;
}

export function stkPassword(shortcode: string, passkey: string, timestamp: string): string {
  return Buffer.from(`${shortcode}${passkey}${timestamp}`).toString("base64");
}

/** `+254712345678` → `254712345678` (Daraja's MSISDN form). */
export function toMsisdn(e164: string): string {
  return e164.replace(/^\+/, "");
}
