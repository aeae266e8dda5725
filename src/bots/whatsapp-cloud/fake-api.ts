import { createHmac, randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { Hono } from "hono";
import { isUserId } from "./inbound.ts";
import { SERVICE_WINDOW_MS } from "./sender.ts";

/**
 * A stand-in for the Graph API's WhatsApp messages endpoint on 127.0.0.1, spoken to over real HTTP:
 * it checks the token and the message as Meta does, refuses with Meta's error shapes (190 for a bad
 * token, 131009 for a parameter out of bounds, 100 for a malformed request, 131047 for free text to
 * someone who has not written within 24 hours, 132001/132000 for an unknown template or a wrong count
 * of its parameters, 130429 with `Retry-After` when told to slow down), and records what it accepted
 * and what it refused.
 */

export interface SentMessage {
  /** The WhatsApp id it went to, or the BSUID when it was sent to a `recipient` alone. */
  to: string;
  /** The whole request body as sent. */
  payload: Record<string, unknown>;
  /** The `wamid` the fake answered with. */
  id: string;
}

/** A send the fake refused, with Meta's error code. */
export interface RefusedMessage {
  to: string;
  payload: Record<string, unknown>;
  code: number;
}

export interface FakeWhatsApp {
  /** `WHATSAPP_CLOUD_GRAPH_URL` for the adapter: `http://127.0.0.1:<port>/v21.0`. */
  graphUrl: string;
  token: string;
  phoneNumberId: string;
  /** Every accepted message, oldest first. */
  readonly sent: SentMessage[];
  sentTo(to: string): SentMessage[];
  /** Every send refused after its token and phone number id were accepted, oldest first. */
  readonly refused: RefusedMessage[];
  /** The fake's clock: what it stamps a person's message with, and measures the 24 hours by. */
  now(): Date;
  /**
   * The next `count` sends answer 429 with Meta's code 130429 and `Retry-After: <seconds>`, or
   * (`form` "date") the HTTP date that many seconds on, beside a `Date` of the fake's clock.
   */
  rateLimitNext(retryAfterSeconds: number, count?: number, form?: "seconds" | "date"): void;
  /** The person wrote to the business now: free text may reach them for 24 hours. */
  userWrote(waId: string): void;
  /** An approved message template with `params` body parameters, in `language` (`en`, `sw`). */
  approveTemplate(name: string, language: string, params: number): void;
  /**
   * For people (the sandbox): `POST /sandbox/messages {"from": "254712345678", "text": "hi"}` is
   * turned into Meta's webhook body, signed with `appSecret` and posted to `url`, as WhatsApp would;
   * `GET /sandbox/chats/<wa id>` shows what the business sent there.
   */
  connectWebhook(webhook: { url: string; appSecret: string }): void;
  close(): Promise<void>;
}

const LIMITS = { buttons: 3, buttonTitle: 20, rows: 10, rowTitle: 24, rowId: 200, body: 1024, text: 4096 };

type Refusal = { status: number; code: number; message: string; details?: string };

const invalid = (details: string): Refusal => ({
  status: 400,
  code: 131009,
  message: "(#131009) Parameter value is not valid",
  details,
});

const isString = (value: unknown): value is string => typeof value === "string";

function checkInteractive(interactive: Record<string, unknown>): Refusal | null {
  const body = (interactive.body as { text?: unknown } | undefined)?.text;
  if (!isString(body) || body.length === 0 || body.length > LIMITS.body)
    return invalid(`Body text length invalid. Min length: 1, Max length: ${LIMITS.body}`);
  const action = (interactive.action ?? {}) as Record<string, unknown>;
  if (interactive.type === "button") {
    const buttons = Array.isArray(action.buttons)
      ? (action.buttons as { reply?: { id?: unknown; title?: unknown } }[])
      : [];
    if (buttons.length === 0 || buttons.length > LIMITS.buttons)
      return invalid(`Number of buttons invalid. Min: 1, Max: ${LIMITS.buttons}`);
    for (const button of buttons) {
      const title = button.reply?.title;
      if (!isString(title) || title.length === 0 || title.length > LIMITS.buttonTitle)
        return invalid(`Button title length invalid. Min length: 1, Max length: ${LIMITS.buttonTitle}`);
      if (!isString(button.reply?.id)) return invalid("Button id is required");
    }
    return null;
  }
  if (interactive.type === "list") {
    if (!isString(action.button) || action.button.length === 0 || action.button.length > 20)
      return invalid("Button label length invalid. Min length: 1, Max length: 20");
    const sections = Array.isArray(action.sections) ? (action.sections as { rows?: unknown }[]) : [];
    const rows = sections.flatMap((s) =>
      Array.isArray(s.rows) ? (s.rows as { id?: unknown; title?: unknown }[]) : [],
    );
    if (rows.length === 0 || rows.length > LIMITS.rows)
      return invalid(`Total row count exceed max allowed count: ${LIMITS.rows}`);
    for (const row of rows) {
      if (!isString(row.title) || row.title.length === 0 || row.title.length > LIMITS.rowTitle)
        return invalid(`Row title length invalid. Min length: 1, Max length: ${LIMITS.rowTitle}`);
      if (!isString(row.id) || row.id.length > LIMITS.rowId)
        return invalid(`Row id length invalid. Max length: ${LIMITS.rowId}`);
    }
    return null;
  }
  return invalid("Interactive type is not supported");
}

/** Whom a send request names: Meta takes `to` (a number) or `recipient` (a BSUID), `to` if both. */
function checkAddress(payload: Record<string, unknown>): Refusal | null {
  const malformed = (message: string): Refusal => ({ status: 400, code: 100, message });
  if (payload.to === undefined && payload.recipient === undefined)
    return malformed("(#100) The parameter to or recipient is required.");
  if (payload.to !== undefined && (!isString(payload.to) || !/^\+?\d{6,15}$/.test(payload.to)))
    return malformed("(#100) Invalid parameter");
  if (payload.to === undefined && (!isString(payload.recipient) || !isUserId(payload.recipient)))
    return malformed("(#100) Invalid parameter");
  return null;
}

/** Meta's checks of a send request, in the order it makes them; null when the message would go. */
function check(payload: Record<string, unknown>): Refusal | null {
  const malformed = (message: string): Refusal => ({ status: 400, code: 100, message });
  if (payload.messaging_product !== "whatsapp")
    return malformed("(#100) The parameter messaging_product is required.");
  if (payload.type === "text") {
    const body = (payload.text as { body?: unknown } | undefined)?.body;
    if (!isString(body) || body.trim().length === 0 || body.length > LIMITS.text)
      return invalid(`Text body length invalid. Min length: 1, Max length: ${LIMITS.text}`);
    return null;
  }
  if (
    payload.type === "interactive" &&
    typeof payload.interactive === "object" &&
    payload.interactive !== null
  )
    return checkInteractive(payload.interactive as Record<string, unknown>);
  return malformed("(#100) Invalid parameter");
}

function checkTemplate(
  payload: Record<string, unknown>,
  approved: ReadonlyMap<string, number>,
): Refusal | null {
  const template = (payload.template ?? {}) as {
    name?: unknown;
    language?: { code?: unknown };
    components?: { type?: string; parameters?: unknown[] }[];
  };
  const key = `${String(template.name)}:${String(template.language?.code)}`;
  const expected = approved.get(key);
  if (expected === undefined)
    return {
      status: 404,
      code: 132001,
      message: "(#132001) Template name does not exist in the translation",
      details: `template name (${String(template.name)}) does not exist in ${String(template.language?.code)}`,
    };
  const given = (template.components ?? [])
    .filter((c) => c.type === "body")
    .reduce((n, c) => n + (Array.isArray(c.parameters) ? c.parameters.length : 0), 0);
  if (given !== expected)
    return {
      status: 400,
      code: 132000,
      message: "(#132000) Number of parameters does not match the expected number of params",
      details: `body: number of localizable_params (${given}) does not match the expected number of params (${expected})`,
    };
  return null;
}

export async function startFakeWhatsApp(
  options: { token?: string; phoneNumberId?: string; version?: string; now?: () => Date; port?: number } = {},
): Promise<FakeWhatsApp> {
  const now = options.now ?? (() => new Date());
  const lastWrote = new Map<string, number>();
  const templates = new Map<string, number>();
  const token = options.token ?? "EAAG-fake-whatsapp-token";
  const phoneNumberId = options.phoneNumberId ?? "106540352242922";
  const version = options.version ?? "v21.0";
  const sent: SentMessage[] = [];
  const refused: RefusedMessage[] = [];
  const rateLimit = { retryAfterSeconds: 0, count: 0, form: "seconds" as "seconds" | "date" };
  const fbtrace = () => randomBytes(8).toString("base64url");
  const error = (refusal: Refusal) => ({
    error: {
      message: refusal.message,
      type: "OAuthException",
      code: refusal.code,
      ...(refusal.details ? { error_data: { messaging_product: "whatsapp", details: refusal.details } } : {}),
      fbtrace_id: fbtrace(),
    },
  });

  const app = new Hono();
  let webhook: { url: string; appSecret: string } | null = null;
  let inboundSeq = 0;
  app.post("/sandbox/messages", async (c) => {
    const body = (await c.req.json().catch(() => null)) as { from?: unknown; text?: unknown } | null;
    const from = String(body?.from ?? "").replace(/^\+/, "");
    if (!webhook) return c.json({ error: "no webhook connected" }, 409);
    if (!/^\d{6,15}$/.test(from) || typeof body?.text !== "string" || body.text === "")
      return c.json({ error: 'send {"from": "254712345678", "text": "hi"}' }, 400);
    lastWrote.set(from, now().getTime());
    const delivery = JSON.stringify({
      object: "whatsapp_business_account",
      entry: [
        {
          id: "sandbox-waba",
          changes: [
            {
              field: "messages",
              value: {
                messaging_product: "whatsapp",
                metadata: { display_phone_number: "254700000000", phone_number_id: phoneNumberId },
                contacts: [{ profile: { name: "Sandbox" }, wa_id: from }],
                messages: [
                  {
                    from,
                    id: `wamid.sandbox${++inboundSeq}${randomBytes(6).toString("hex")}`,
                    timestamp: String(Math.floor(now().getTime() / 1000)),
                    type: "text",
                    text: { body: body.text },
                  },
                ],
              },
            },
          ],
        },
      ],
    });
    const signature = `sha256=${createHmac("sha256", webhook.appSecret).update(delivery).digest("hex")}`;
    const answer = await fetch(webhook.url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-hub-signature-256": signature },
      body: delivery,
    });
    return c.json({ delivered: answer.status }, answer.ok ? 200 : 502);
  });
  app.get("/sandbox/chats/:waId", (c) =>
    c.json(sent.filter((message) => message.to === c.req.param("waId")).map((message) => message.payload)),
  );
  app.post(`/${version}/:phoneNumberId/messages`, async (c) => {
    if (c.req.header("authorization") !== `Bearer ${token}`) {
      const refusal = {
        status: 401,
        code: 190,
        message: "Invalid OAuth access token - Cannot parse access token",
      };
      return c.json(error(refusal), 401);
    }
    if (c.req.param("phoneNumberId") !== phoneNumberId) {
      const refusal = {
        status: 400,
        code: 100,
        message: `Unsupported post request. Object with ID '${c.req.param("phoneNumberId")}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.`,
      };
      return c.json(error(refusal), 400);
    }
    let payload: Record<string, unknown>;
    try {
      payload = (await c.req.json()) as Record<string, unknown>;
    } catch {
      return c.json(error({ status: 400, code: 100, message: "(#100) Invalid parameter" }), 400);
    }
    const to = String(payload.to ?? payload.recipient).replace(/^\+/, "");
    if (rateLimit.count > 0) {
      rateLimit.count--;
      refused.push({ to, payload, code: 130429 });
      const refusal = { status: 429, code: 130429, message: "(#130429) Rate limit hit" };
      const retryAfter: Record<string, string> =
        rateLimit.form === "date"
          ? {
              date: now().toUTCString(),
              "retry-after": new Date(now().getTime() + rateLimit.retryAfterSeconds * 1000).toUTCString(),
            }
          : { "retry-after": String(rateLimit.retryAfterSeconds) };
      return c.json(error(refusal), 429, retryAfter);
    }
    const refusal =
      checkAddress(payload) ??
      (payload.type === "template"
        ? checkTemplate(payload, templates)
        : (check(payload) ??
          (now().getTime() - (lastWrote.get(to) ?? Number.NEGATIVE_INFINITY) >= SERVICE_WINDOW_MS
            ? {
                status: 400,
                code: 131047,
                message: "(#131047) Re-engagement message",
                details:
                  "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
              }
            : null)));
    if (refusal) {
      refused.push({ to, payload, code: refusal.code });
      return c.json(error(refusal), refusal.status as 400);
    }
    const id = `wamid.${randomBytes(12).toString("base64url")}`;
    sent.push({ to, payload, id });
    return c.json({
      messaging_product: "whatsapp",
      contacts: [payload.to !== undefined ? { input: payload.to, wa_id: to } : { input: to, user_id: to }],
      messages: [{ id }],
    });
  });
  app.all("*", (c) => c.json(error({ status: 400, code: 100, message: "Unknown path components" }), 400));

  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: options.port ?? 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const port = (server.address() as AddressInfo).port;
  return {
    graphUrl: `http://127.0.0.1:${port}/${version}`,
    token,
    phoneNumberId,
    sent,
    sentTo: (to) => sent.filter((message) => message.to === to),
    refused,
    now,
    rateLimitNext(retryAfterSeconds, count = 1, form = "seconds") {
      rateLimit.retryAfterSeconds = retryAfterSeconds;
      rateLimit.count = count;
      rateLimit.form = form;
    },
    userWrote: (waId) => lastWrote.set(waId, now().getTime()),
    approveTemplate: (name, language, params) => templates.set(`${name}:${language}`, params),
    connectWebhook(target) {
      webhook = target;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
