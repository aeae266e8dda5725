import { z } from "zod";

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
  ResultCode: z.union([z.string(), z.number()]).transform(String),
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
      ResultCode: z.union([z.number(), z.string()]).transform((v) => Number(v)),
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

export function parseStkCallback(body: unknown): ParsedStkCallback | null {
  const parsed = stkCallback.safeParse(body);
  if (!parsed.success) return null;
  const cb = parsed.data.Body.stkCallback;
  const items = new Map((cb.CallbackMetadata?.Item ?? []).map((i) => [i.Name, i.Value]));
  const amount = items.get("Amount");
  const receipt = items.get("MpesaReceiptNumber");
  const phone = items.get("PhoneNumber");
  const date = items.get("TransactionDate");
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
