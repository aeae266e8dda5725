import { createHmac } from "node:crypto";
import { Hono } from "hono";
import type { BillingContext } from "../../src/billing/context.ts";
import type { FakeWhatsApp, SentMessage } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { createWhatsAppCloud } from "../../src/bots/whatsapp-cloud/index.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { settings, silent } from "../ussd/world.ts";

export const APP_SECRET = "wa-app-secret-for-tests";
export const VERIFY_TOKEN = "wa-verify-token-0123456789";

/** Meta's `X-Hub-Signature-256` for a body, computed here as Meta would, not by the code under test. */
export const signatureOf = (body: string, secret = APP_SECRET) =>
  `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;

/** The channel against the fake, its webhook mounted like the app would mount it. */
export function startWhatsApp(
  ctx: BillingContext,
  fake: FakeWhatsApp,
  options: Partial<Parameters<typeof createWhatsAppCloud>[0]> = {},
) {
  const channel = createWhatsAppCloud({
    ctx,
    logger: silent,
    services: createMenuServices(ctx, { planCacheMs: 0 }),
    settings,
    token: fake.token,
    phoneNumberId: fake.phoneNumberId,
    appSecret: APP_SECRET,
    verifyToken: VERIFY_TOKEN,
    graphUrl: fake.graphUrl,
    background: false,
    ...options,
  });
  const app = new Hono();
  app.route("/hooks/wa", channel.routes);
  return {
    channel,
    request: (path: string, init?: RequestInit) => app.request(path, init),
    /**
     * Posts a raw body with a signature (default: the right one; null: none) and waits until the
     * work it queued is done, so a test reads the outcome, not a race.
     */
    async post(body: string, signature: string | null = signatureOf(body)) {
      const response = await app.request("/hooks/wa", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(signature === null ? {} : { "x-hub-signature-256": signature }),
        },
        body,
      });
      await channel.idle();
      await channel.sendDue();
      return response.status;
    },
  };
}

export type WhatsAppInstance = ReturnType<typeof startWhatsApp>;

let messageSeq = 0;
export const newMessageId = () => `wamid.test${++messageSeq}${Date.now()}`;

/** A webhook body carrying one message, shaped as Meta sends it. */
export function inbound(
  fake: FakeWhatsApp,
  waId: string,
  message: Record<string, unknown>,
  id = newMessageId(),
): string {
  // Meta lets the business answer for 24 hours after this.
  fake.userWrote(waId);
  return JSON.stringify({
    object: "whatsapp_business_account",
    entry: [
      {
        id: "WABA-1",
        changes: [
          {
            field: "messages",
            value: {
              messaging_product: "whatsapp",
              metadata: { display_phone_number: "254700000000", phone_number_id: fake.phoneNumberId },
              contacts: [{ profile: { name: "Achieng" }, wa_id: waId }],
              messages: [
                { from: waId, id, timestamp: String(Math.floor(fake.now().getTime() / 1000)), ...message },
              ],
            },
          },
        ],
      },
    ],
  });
}

/** Meta's later report that a message it accepted (200 and a wamid) could not be delivered. */
export function failedStatusReport(fake: FakeWhatsApp, messageId: string, waId: string, code: number) {
  const status = {
    id: messageId,
    status: "failed",
    timestamp: String(Math.floor(fake.now().getTime() / 1000)),
    recipient_id: waId,
    errors: [{ code, title: "Message undeliverable", message: "Message undeliverable" }],
  };
  const metadata = { display_phone_number: "254700000000", phone_number_id: fake.phoneNumberId };
  return {
    object: "whatsapp_business_account",
    entry: [
      {
        id: "WABA-1",
        changes: [
          { field: "messages", value: { messaging_product: "whatsapp", metadata, statuses: [status] } },
        ],
      },
    ],
  };
}

export const text = (body: string) => ({ type: "text", text: { body } });
export const buttonReply = (id: string, title = "x") => ({
  type: "interactive",
  interactive: { type: "button_reply", button_reply: { id, title } },
});
export const listReply = (id: string, title = "x") => ({
  type: "interactive",
  interactive: { type: "list_reply", list_reply: { id, title } },
});

interface Option {
  id: string;
  title: string;
}

/** The options of a sent message: its reply buttons or its list rows. */
export function optionsOf(message: SentMessage | undefined): Option[] {
  const interactive = message?.payload.interactive as
    | {
        type: string;
        action: { buttons?: { reply: Option }[]; sections?: { rows: Option[] }[] };
      }
    | undefined;
  if (!interactive) return [];
  if (interactive.type === "button") return interactive.action.buttons?.map((b) => b.reply) ?? [];
  return interactive.action.sections?.flatMap((s) => s.rows) ?? [];
}

/** The text a person reads: a text message's body or an interactive message's body. */
export function bodyOf(message: SentMessage | undefined): string | undefined {
  const payload = message?.payload as
    | { text?: { body: string }; interactive?: { body: { text: string } } }
    | undefined;
  return payload?.text?.body ?? payload?.interactive?.body.text;
}

/** The id of the option whose title starts with `prefix`. */
export function optionIdOf(message: SentMessage | undefined, prefix: string): string {
  const found = optionsOf(message).find((o) => o.title.startsWith(prefix));
  if (!found) throw new Error(`no option "${prefix}" in ${JSON.stringify(message?.payload)}`);
  return found.id;
}
