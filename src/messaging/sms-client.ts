import { createRequire } from "node:module";

/** What the SMS worker needs from a gateway. */
export interface SmsSender {
  /**
   * Resolves with the gateway's message id; rejects with a readable reason when it was not accepted
   * (an `SmsSendError` when the gateway said why).
   */
  send(to: string, message: string): Promise<{ messageId: string }>;
}

/**
 * Why a message was not sent, as far as the worker must act on it:
 * - `transient`: try this message again later (the gateway did not take it, or did not say why);
 * - `recipient`: this number will not take it (opted out, not a mobile, invalid): retrying cannot
 *   help, other messages go on;
 * - `account`: nothing will go out until an admin acts (sender ID not registered, balance used up,
 *   credentials refused): every message would fail the same way;
 * - `gateway`: the gateway itself failed (a 5xx, 429, no answer, not reachable): every message would
 *   meet it until it is back, however long its outage lasts.
 */
export type SmsFailureKind = "transient" | "recipient" | "account" | "gateway";

export class SmsSendError extends Error {
  override readonly name = "SmsSendError";
  constructor(
    message: string,
    readonly kind: SmsFailureKind,
    /** For `account`: what the admin should check, never a secret's value. */
    readonly advice?: string,
  ) {
    super(message);
  }
}

/** AT's per-recipient status codes (SMS API documentation) that say more than "failed". */
const acceptedCodes = new Set([100, 101, 102]); // Processed, Sent, Queued
const accountProblems: Record<string, string> = {
  InvalidSenderId: "AT_SENDER_ID must be a sender ID registered on the Africa's Talking account (or unset)",
  InsufficientBalance: "the Africa's Talking account's balance must be topped up",
};
const accountCodes: Record<number, keyof typeof accountProblems> = {
  402: "InvalidSenderId",
  405: "InsufficientBalance",
};
/**
 * The number will not take an SMS, whenever it is sent: 403 InvalidPhoneNumber, 404
 * UnsupportedNumberType, 406 UserInBlacklist (the subscriber opted out of our sender), 409
 * DoNotDisturbRejection. 407 CouldNotRoute may be a route's passing trouble: retried.
 */
const recipientCodes = new Set([403, 404, 406, 409]);
/** AT's own failure, told per recipient inside a 201: 500 InternalServerError, 501 GatewayError. */
const gatewayCodes = new Set([500, 501]);

export interface AtSmsOptions {
  username: string;
  apiKey: string;
  senderId?: string;
  /**
   * Full URL SMS are posted to. Unset: the package's own host (production, or sandbox when the
   * username is `sandbox`). Set: tests and sandbox mode point it at the local fake.
   */
  smsUrl?: string;
}

interface AtRecipient {
  statusCode: number;
  number: string;
  status: string;
  messageId: string;
}
interface AtSendResult {
  SMSMessageData?: { Message?: string; Recipients?: AtRecipient[] };
}
interface AtClient {
  SMS: { send(params: { to: string[]; message: string; from?: string }): Promise<AtSendResult> };
}

// The package is CommonJS without type declarations; these are the two pieces Tandao uses.
const require = createRequire(import.meta.url);
const africastalking = require("africastalking") as (options: {
  username: string;
  apiKey: string;
}) => AtClient;
const atUrls = require("africastalking/lib/common.js") as { SMS_URL: string };

/**
 * The `africastalking` package has no base-URL option: `lib/common.js` holds the endpoint URLs as
 * module-level exports, which its SMS module reads at send time, and it rewrites all of them when a
 * client is made with the username `sandbox`. Overriding `SMS_URL` here, after the client is made,
 * is the one place the endpoint is redirected (`AT_SMS_URL`); it is process-wide, like the
 * package's own sandbox switch, so a process talks to one SMS endpoint.
 */
function pointSmsAt(url: string): void {
  atUrls.SMS_URL = url;
}

/** Sends through the official `africastalking` package (its validation, its HTTP call). */
export function createAtSmsSender(options: AtSmsOptions): SmsSender {
  const client = africastalking({ username: options.username, apiKey: options.apiKey });
  if (options.smsUrl) pointSmsAt(options.smsUrl);
  return {
    async send(to, message) {
      let result: AtSendResult;
      try {
        result = await client.SMS.send({
          to: [to],
          message,
          ...(options.senderId ? { from: options.senderId } : {}),
        });
      } catch (error) {
        // The package rejects with the body itself when the status is not 201.
        if (isSendResult(error)) result = error;
        else throw describeAtError(error);
      }
      const recipient = result.SMSMessageData?.Recipients?.[0];
      if (!recipient) {
        // AT refuses a whole request (e.g. an unregistered sender ID) with no recipients and the reason as `Message`.
        const reason = result.SMSMessageData?.Message ?? "no recipient in reply";
        const advice = accountProblems[reason];
        throw new SmsSendError(`not accepted: ${reason}`, advice ? "account" : "transient", advice);
      }
      if (recipient.status === "Success" || acceptedCodes.has(recipient.statusCode)) {
        return { messageId: recipient.messageId };
      }
      const text = `recipient ${recipient.status} (${recipient.statusCode})`;
      const problem = accountCodes[recipient.statusCode];
      if (problem) throw new SmsSendError(text, "account", accountProblems[problem]);
      if (gatewayCodes.has(recipient.statusCode)) throw new SmsSendError(text, "gateway");
      throw new SmsSendError(text, recipientCodes.has(recipient.statusCode) ? "recipient" : "transient");
    },
  };
}

function isSendResult(value: unknown): value is AtSendResult {
  return typeof value === "object" && value !== null && "SMSMessageData" in value;
}

/**
 * A failed request as the worker records it. AT answers 401 when the username or API key is wrong,
 * 403 when the account admits only listed server addresses. The HTTP client's own errors (no
 * answer: refused, reset, DNS) carry a code and no response.
 */
function describeAtError(error: unknown): SmsSendError {
  if (error && typeof error === "object") {
    const e = error as { response?: { status?: number; data?: unknown }; message?: string; code?: unknown };
    const status = e.response?.status;
    if (status) {
      const data =
        typeof e.response!.data === "string" ? e.response!.data : JSON.stringify(e.response!.data ?? "");
      const text = `HTTP ${status}: ${data.slice(0, 200)}`;
      if (status === 401 || status === 403) {
        return new SmsSendError(
          text,
          "account",
          "AT_USERNAME and AT_API_KEY must be the account's, and this server's address allowed if the account lists addresses",
        );
      }
      return new SmsSendError(text, status >= 500 || status === 429 ? "gateway" : "transient");
    }
    if (typeof e.code === "string" && /^E[A-Z_]+$/.test(e.code))
      return new SmsSendError((e.message ?? e.code).slice(0, 300), "gateway");
    if (e.message) return new SmsSendError(e.message.slice(0, 300), "transient");
  }
  return new SmsSendError(String(error).slice(0, 300), "transient");
}
