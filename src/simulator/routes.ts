import { Hono } from "hono";
import { limitBody } from "../lib/body-limit.ts";
import type { FakeSms } from "../messaging/at-fake.ts";
import type { Item } from "../network/emulator/menus.ts";
import type { FakeDaraja } from "../payments/mpesa/fake.ts";
import { simulatorPage } from "./page.ts";

/**
 * The sandbox simulator: a browser page with feature phones (USSD, the M-Pesa prompt, the SMS
 * inbox, the chat bots) and the emulated router's state. Mounted at `/simulator` in sandbox mode
 * only: it drives the built-in fakes and must never exist next to real M-Pesa, SMS or routers.
 */
export interface SimulatorDeps {
  ispName: string;
  /** What the phones dial, e.g. `*384*1#`. */
  serviceCode: string;
  /** Ready to pick on the page. */
  demoPhone: string;
  strangerPhone?: string;
  /**
   * Posts one Africa's Talking USSD form to the app's `/ussd` route (in-process, e.g. `app.request`),
   * and answers its response.
   */
  ussd(form: URLSearchParams): Promise<Response> | Response;
  /** The Daraja fake: while a simulator page is open its pushes wait for the person's decision. */
  daraja: Pick<FakeDaraja, "holdPushes" | "pendingPushes" | "approve" | "wrongPin" | "cancel" | "ignore">;
  /** The Africa's Talking fake (what SMS it received). */
  sms: { inbox: readonly FakeSms[] } | null;
  /** The emulated router, when the sandbox runs one. */
  router: { items(menu: string): Item[] } | null;
  /** Base URL of the Telegram fake (`/sandbox/updates`, `/sandbox/chats/:id`). */
  telegramUrl?: string | undefined;
  /** Base URL of the WhatsApp Cloud fake (`/sandbox/messages`, `/sandbox/chats/:waId`). */
  whatsappUrl?: string | undefined;
  /** Pushes stop being held this long after the last poll of any simulator page (default 15 s). */
  holdIdleMs?: number;
  /** How often the page polls (default 1500 ms). */
  pollMs?: number;
}

const phonePattern = /^\+?\d{9,15}$/;
const digits = (phone: string) => phone.replace(/\D/g, "");
const plus = (phone: string) => `+${digits(phone)}`;

/** RouterOS writes booleans as `true`/`false` in the API and `yes`/`no` in the terminal. */
const yesNo = (value: string | undefined) => (value === "true" || value === "yes" ? "yes" : "no");

function routerState(router: SimulatorDeps["router"]) {
  if (!router) return null;
  return {
    secrets: router.items("/ppp/secret").map((s) => ({
      name: s.name ?? "",
      profile: s.profile ?? "",
      disabled: yesNo(s.disabled),
    })),
    active: router.items("/ppp/active").map((a) => ({
      name: a.name ?? "",
      address: a.address ?? "",
      uptime: a.uptime ?? "",
    })),
    hotspotUsers: router.items("/ip/hotspot/user").map((u) => ({
      name: u.name ?? "",
      profile: u.profile ?? "",
      limitUptime: u["limit-uptime"] ?? "",
      disabled: yesNo(u.disabled),
    })),
    hotspotActive: router.items("/ip/hotspot/active").map((a) => ({
      user: a.user ?? "",
      address: a.address ?? "",
      uptime: a.uptime ?? "",
    })),
  };
}

async function readJsonBody(c: { req: { json(): Promise<unknown> } }): Promise<Record<string, unknown>> {
  const body = await c.req.json().catch(() => null);
  return body && typeof body === "object" ? (body as Record<string, unknown>) : {};
}

export function createSimulatorRoutes(deps: SimulatorDeps): Hono {
  const app = new Hono();
  const holdIdleMs = deps.holdIdleMs ?? 15_000;
  let release: NodeJS.Timeout | null = null;
  /** A page polled: hold pushes for people to answer, until no page has polled for a while. */
  const present = () => {
    deps.daraja.holdPushes(true);
    if (release) clearTimeout(release);
    release = setTimeout(() => {
      release = null;
      deps.daraja.holdPushes(false);
    }, holdIdleMs);
    release.unref();
  };

  app.use("*", limitBody(16 * 1024));

  app.get("/", (c) =>
    c.html(
      simulatorPage({
        ispName: deps.ispName,
        serviceCode: deps.serviceCode,
        demoPhone: plus(deps.demoPhone),
        strangerPhone: plus(deps.strangerPhone ?? "+254799000111"),
        pollMs: deps.pollMs ?? 1_500,
        chats: { telegram: Boolean(deps.telegramUrl), whatsapp: Boolean(deps.whatsappUrl) },
      }),
    ),
  );

  /** Everything the page shows that changes on its own: per phone the prompts and SMS; the router. */
  app.get("/api/state", (c) => {
    present();
    const phones = (c.req.query("phones") ?? "")
      .split(",")
      .filter((p) => phonePattern.test(p.trim()))
      .slice(0, 12)
      .map((p) => plus(p.trim()));
    const state: Record<string, unknown> = {};
    for (const phone of phones) {
      const wanted = digits(phone);
      state[phone] = {
        prompts: deps.daraja.pendingPushes(wanted).map((p) => ({
          checkoutRequestId: p.checkoutRequestId,
          amount: `KES ${p.amount.toLocaleString("en-US")}`,
          account: p.accountReference,
        })),
        sms: (deps.sms?.inbox ?? [])
          .filter((m) => digits(m.to) === wanted)
          .map((m) => ({ id: m.messageId, from: m.from, text: m.message, at: m.receivedAt.toISOString() }))
          .reverse(),
      };
    }
    return c.json({ isp: deps.ispName, phones: state, router: routerState(deps.router) });
  });

  /** One USSD request, as Africa's Talking would post it for this phone. */
  app.post("/api/ussd", async (c) => {
    const body = await readJsonBody(c);
    const phone = typeof body.phone === "string" ? body.phone.trim() : "";
    const sessionId = typeof body.sessionId === "string" ? body.sessionId : "";
    const text = typeof body.text === "string" ? body.text : "";
    if (!phonePattern.test(phone) || !/^[\w-]{1,64}$/.test(sessionId) || text.length > 640)
      return c.json({ error: "send phone, sessionId and text" }, 400);
    const form = new URLSearchParams({
      sessionId,
      serviceCode: deps.serviceCode,
      phoneNumber: plus(phone),
      networkCode: "63902",
      text,
    });
    const answer = await deps.ussd(form);
    const response = await answer.text();
    return c.json({ status: answer.status, response });
  });

  /** The person's answer to an M-Pesa prompt. */
  app.post("/api/prompts/:checkoutId", async (c) => {
    present();
    const checkoutId = c.req.param("checkoutId");
    const body = await readJsonBody(c);
    const pin = typeof body.pin === "string" ? body.pin : "";
    let done: boolean;
    switch (body.decision) {
      case "pay":
        if (!/^\d{4}$/.test(pin)) return c.json({ error: "Enter your 4-digit M-Pesa PIN." }, 400);
        done = deps.daraja.approve(checkoutId, pin);
        break;
      case "wrong_pin":
        done = deps.daraja.wrongPin(checkoutId);
        break;
      case "cancel":
        done = deps.daraja.cancel(checkoutId);
        break;
      case "ignore":
        done = deps.daraja.ignore(checkoutId);
        break;
      default:
        return c.json({ error: "decision is pay, wrong_pin, cancel or ignore" }, 400);
    }
    if (!done) return c.json({ error: "That prompt is no longer open." }, 409);
    return c.json({ ok: true });
  });

  /** Chats: the person writes to the bot through the fakes' sandbox endpoints. */
  app.post("/api/chat/:channel", async (c) => {
    const channel = c.req.param("channel");
    const body = await readJsonBody(c);
    const phone = typeof body.phone === "string" ? body.phone.trim() : "";
    const text = typeof body.text === "string" ? body.text.slice(0, 1000) : "";
    const share = body.shareContact === true;
    if (!phonePattern.test(phone) || (!text && !share)) return c.json({ error: "send phone and text" }, 400);
    let answer: Response;
    if (channel === "telegram" && deps.telegramUrl) {
      answer = await fetch(`${deps.telegramUrl}/sandbox/updates`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(
          share
            ? { user: Number(digits(phone)), contact: plus(phone) }
            : { user: Number(digits(phone)), text },
        ),
      });
    } else if (channel === "whatsapp" && deps.whatsappUrl) {
      answer = await fetch(`${deps.whatsappUrl}/sandbox/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ from: digits(phone), text }),
      });
    } else return c.json({ error: "no such chat in this sandbox" }, 404);
    return c.json({ ok: answer.ok }, answer.ok ? 200 : 502);
  });

  /** What the bot sent to this phone's chat, oldest first, as plain texts and button labels. */
  app.get("/api/chat/:channel/:phone", async (c) => {
    const channel = c.req.param("channel");
    const phone = c.req.param("phone");
    if (!phonePattern.test(phone)) return c.json({ error: "bad phone" }, 400);
    if (channel === "telegram" && deps.telegramUrl) {
      const answer = await fetch(`${deps.telegramUrl}/sandbox/chats/${digits(phone)}`);
      const body = (await answer.json()) as { result?: { text?: string; reply_markup?: unknown }[] };
      return c.json({
        messages: (body.result ?? []).map((m) => ({ text: m.text ?? "", buttons: buttons(m.reply_markup) })),
      });
    }
    if (channel === "whatsapp" && deps.whatsappUrl) {
      const answer = await fetch(`${deps.whatsappUrl}/sandbox/chats/${digits(phone)}`);
      const body = (await answer.json()) as Record<string, unknown>[];
      return c.json({ messages: (Array.isArray(body) ? body : []).map(whatsappText) });
    }
    return c.json({ error: "no such chat in this sandbox" }, 404);
  });

  app.all("*", (c) => c.text("Not Found", 404));
  return app;
}

/** Button labels of a Telegram reply markup (inline or reply keyboard). */
function buttons(markup: unknown): string[] {
  const rows = (markup as { inline_keyboard?: unknown[]; keyboard?: unknown[] } | undefined) ?? {};
  const grid = (rows.inline_keyboard ?? rows.keyboard ?? []) as unknown[];
  const labels: string[] = [];
  for (const row of grid)
    if (Array.isArray(row))
      for (const button of row) {
        const label = typeof button === "string" ? button : (button as { text?: unknown })?.text;
        if (typeof label === "string") labels.push(label);
      }
  return labels;
}

/** A WhatsApp Cloud message payload as text and button labels (text, interactive, template). */
function whatsappText(payload: Record<string, unknown>): { text: string; buttons: string[] } {
  const text = (payload.text as { body?: string } | undefined)?.body;
  if (text) return { text, buttons: [] };
  const interactive = payload.interactive as
    | {
        body?: { text?: string };
        action?: {
          buttons?: { reply?: { title?: string } }[];
          sections?: { rows?: { title?: string }[] }[];
        };
      }
    | undefined;
  if (interactive) {
    const labels = [
      ...(interactive.action?.buttons ?? []).map((b) => b.reply?.title ?? ""),
      ...(interactive.action?.sections ?? []).flatMap((s) => (s.rows ?? []).map((r) => r.title ?? "")),
    ].filter(Boolean);
    return { text: interactive.body?.text ?? "", buttons: labels };
  }
  const template = payload.template as { name?: string } | undefined;
  if (template) return { text: `[template ${template.name ?? ""}]`, buttons: [] };
  return { text: JSON.stringify(payload), buttons: [] };
}
