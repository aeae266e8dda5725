import { createRequire } from "node:module";

/** What the SMS worker needs from a gateway. */
export interface SmsSender {
  /** Resolves with the gateway's message id; rejects with a readable reason when it was not accepted. */
  send(to: string, message: string): Promise<{ messageId: string }>;
}

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
        throw new Error(describeAtError(error));
      }
      const recipient = result.SMSMessageData?.Recipients?.[0];
      if (!recipient)
        throw new Error(`not accepted: ${result.SMSMessageData?.Message ?? "no recipient in reply"}`);
      if (recipient.status !== "Success" && recipient.statusCode !== 101 && recipient.statusCode !== 100) {
        throw new Error(`recipient ${recipient.status} (${recipient.statusCode})`);
      }
      return { messageId: recipient.messageId };
    },
  };
}

function describeAtError(error: unknown): string {
  if (error && typeof error === "object") {
    const e = error as { response?: { status?: number; data?: unknown }; message?: string };
    if (e.response?.status) {
      const data =
        typeof e.response.data === "string" ? e.response.data : JSON.stringify(e.response.data ?? "");
      return `HTTP ${e.response.status}: ${data.slice(0, 200)}`;
    }
    if (e.message) return e.message.slice(0, 300);
  }
  return String(error).slice(0, 300);
}
