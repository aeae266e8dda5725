import { nairobiTimestampToMs } from "./fake-support.ts";
import { stkPassword } from "./wire.ts";

/** What the Daraja fake (fake.ts) finds wrong in a request, worded as Daraja words it. */

/** Daraja refuses callback and C2B URLs that contain any of these words. */
export const banned = /(m-?pesa|safaricom|exe|exec|cmd|sql|query)/i;

/** Daraja's checks of shortcode, password and timestamp, shared by push and query. */
export function credentialProblem(
  body: Record<string, unknown>,
  shortcode: string,
  passkey: string,
): string | null {
  if (String(body.BusinessShortCode ?? "") !== shortcode) return "Invalid BusinessShortCode";
  const timestamp = String(body.Timestamp ?? "");
  if (!/^\d{14}$/.test(timestamp)) return "Invalid Timestamp";
  const skew = Math.abs(nairobiTimestampToMs(timestamp) - Date.now());
  if (skew > 10 * 60_000) return "Invalid Timestamp";
  if (body.Password !== stkPassword(shortcode, passkey, timestamp)) return "Invalid Password";
  return null;
}

/** Daraja's checks of an STK push's other fields, in its order; a Buy Goods push goes to the till. */
export function pushFieldProblem(
  body: Record<string, unknown>,
  shortcode: string,
  till: string | undefined,
): string | null {
  const type = body.TransactionType;
  if (type !== "CustomerPayBillOnline" && type !== "CustomerBuyGoodsOnline") return "Invalid TransactionType";
  const expectedPartyB = type === "CustomerBuyGoodsOnline" ? (till ?? shortcode) : shortcode;
  if (String(body.PartyB ?? "") !== expectedPartyB) return "Invalid PartyB";
  const amount = Number(body.Amount);
  if (!Number.isInteger(amount) || amount < 1) return "Invalid Amount";
  const msisdn = String(body.PhoneNumber ?? "");
  if (!/^254[17]\d{8}$/.test(msisdn)) return "Invalid PhoneNumber";
  if (String(body.PartyA ?? "") !== msisdn) return "Invalid PartyA";
  const callbackUrl = String(body.CallBackURL ?? "");
  if (!/^https?:\/\/[^\s]+$/.test(callbackUrl) || banned.test(callbackUrl)) return "Invalid CallBackURL";
  const reference = body.AccountReference;
  if (typeof reference !== "string" || reference.length === 0 || reference.length > 12)
    return "Invalid AccountReference";
  const description = body.TransactionDesc;
  if (typeof description !== "string" || description.length > 13) return "Invalid TransactionDesc";
  return null;
}
