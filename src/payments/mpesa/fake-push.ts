import { rand } from "./fake-support.ts";
import { darajaTimestamp } from "./wire.ts";

/**
 * An STK push as the Daraja fake (fake.ts) and its held mode (fake-held.ts) both see it: the
 * outcomes it can end with, how a test scripts its delivery, and the record kept of it.
 */

export type StkOutcome = "success" | "cancelled" | "unreachable" | "wrong_pin" | "insufficient_funds";

export const outcomeResults: Record<StkOutcome, { code: number; desc: string }> = {
  success: { code: 0, desc: "The service request is processed successfully." },
  cancelled: { code: 1032, desc: "Request cancelled by user" },
  unreachable: { code: 1037, desc: "DS timeout user cannot be reached" },
  wrong_pin: { code: 2001, desc: "The initiator information is invalid." },
  insufficient_funds: { code: 1, desc: "The balance is insufficient for the transaction." },
};

export interface Delivery {
  outcome: StkOutcome;
  /** When the payer "answers" the prompt; the callback is posted then (default 50 ms). */
  delayMs?: number;
  /** Extra copies of the callback posted at once with the first. */
  duplicates?: number;
  /** The callback is never posted (the STK query still knows the result). */
  lost?: boolean;
  /** Posts the callback this much later than the result is known to the STK query. */
  lateByMs?: number;
  /** Pretends the payer paid another amount than was asked (shillings). */
  paidShillings?: number;
  /**
   * The push is accepted (the prompt is on the phone, the callback follows as above) but its HTTP
   * answer never arrives intact: `reset` drops the connection, `unavailable` answers 503 from
   * "something in front of Daraja" with no Daraja body, `hang` never answers (the client times out).
   */
  answer?: "ok" | "reset" | "unavailable" | "hang";
}

export interface PushRecord {
  merchantRequestId: string;
  checkoutRequestId: string;
  msisdn: string;
  amount: number;
  accountReference: string;
  callbackUrl: string;
  delivery: Delivery;
  resolvesAt: number;
  receipt: string | null;
  body: Record<string, unknown>;
}

/** The identifiers Daraja gives a push it accepts, and its answer saying so. */
export function acceptPush() {
  const merchantRequestId = `${rand(5)}-${rand(8)}-1`;
  const checkoutRequestId = `ws_CO_${darajaTimestamp(new Date())}${rand(10)}`;
  const accepted = {
    MerchantRequestID: merchantRequestId,
    CheckoutRequestID: checkoutRequestId,
    ResponseCode: "0",
    ResponseDescription: "Success. Request accepted for processing",
    CustomerMessage: "Success. Request accepted for processing",
  };
  return { merchantRequestId, checkoutRequestId, accepted };
}
