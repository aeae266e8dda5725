import { randomBytes } from "node:crypto";
import { type Context, Hono } from "hono";
import type { Actor, BillingContext } from "../billing/context.ts";
import {
  defaultPaymentLimits,
  type PaymentLimits,
  type PaymentRequest,
  type RequestPaymentResult,
  requestPayment,
} from "../billing/intents/request.ts";
import { isRowId } from "../db/params.ts";
import { limitBody } from "../lib/body-limit.ts";
import { type ClientAddressReader, clientAddressReader } from "../lib/client-address.ts";
import { checkPhone, DEFAULT_SERVED_COUNTRIES } from "../lib/phone.ts";
import type { Logger } from "../logger.ts";
import { themeFrom } from "./colours.ts";
import { deviceMac, type HotspotVars, hotspotQuery, readHotspotVars } from "./hotspot.ts";
import { hotspotLoginHtml } from "./login-html.ts";
import { type PageView, renderPortalPage } from "./page.ts";
import {
  checkPrintedVoucher,
  findPortalRouter,
  hotspotPlan,
  hotspotPlans,
  type PortalRouter,
  planCard,
  portalPaymentStatus,
  printedCodeShape,
} from "./service.ts";
import { type PortalKey, type PortalLanguage, portalLanguage, pt } from "./text.ts";
import { createTokenSigner } from "./token.ts";

export interface PortalDeps {
  ctx: BillingContext;
  logger: Logger;
  /** `ISP_NAME`, `SUPPORT_PHONE`. */
  ispName: string;
  supportPhone: string;
  /** The ISP's colour (`#rrggbb`); the page keeps every text readable whatever it is. */
  brandColour?: string;
  /** `HOTSPOT_LOGIN_HOSTS`: login host names beyond private addresses (see `safeLoginUrl`). */
  loginHosts?: readonly string[];
  /** `SERVED_COUNTRIES`: other numbers are refused with a clear message. */
  servedCountries?: readonly string[];
  /** Signs the status tokens (≥ 16 bytes); every instance must share it. */
  tokenKey: Uint8Array | string;
  /**
   * Records the STK intent: `payments.request` (the core's `requestPayment` with the configured
   * limits, waking the dispatcher). Default: `requestPayment` with `limits`.
   */
  requestPayment?: (actor: Actor, input: PaymentRequest) => Promise<RequestPaymentResult>;
  limits?: PaymentLimits;
  /** Where the routes are mounted (default `/portal`): the page's own links and the login.html target. */
  basePath?: string;
  /** The portal's public base URL (`PUBLIC_URL`), for the generated login.html. */
  publicUrl: string;
  /** Reverse proxies whose `X-Forwarded-For` is believed (the client address the limits count by). */
  trustedProxies?: readonly string[];
  /**
   * The request's client address, where the socket does not tell it (on the Worker: Cloudflare's
   * `CF-Connecting-IP`). Default: the socket's peer, through `trustedProxies`.
   */
  clientAddress?: ClientAddressReader;
  /** How often the page asks how its payment stands. */
  pollMs?: number;
  /** Printed-code attempts per device (the hotspot's `mac`, else its `ip`) per 5 minutes. */
  voucherTriesPer5Min?: number;
  /**
   * Printed codes looked up per router and client address per 5 minutes, whatever device the page says
   * it is: a whole site reaches the portal from one address, so much higher than per device. Past it
   * a code is not refused but handed to the hotspot's login unchecked.
   */
  voucherTriesPerAddressPer5Min?: number;
}

const MAX_BODY = 8 * 1024;
const KEY_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;

/**
 * The hotspot captive portal: a thin channel. It shows the hotspot plans, asks the billing core
 * for an STK payment (`requestPayment`, the same limits and idempotency as every channel), follows
 * the intent, and hands the page the voucher the settlement made, to log in at the hotspot.
 * Nothing here calls M-Pesa or a router.
 */
export function createPortalRoutes(deps: PortalDeps): Hono {
  const app = new Hono();
  const basePath = (deps.basePath ?? "/portal").replace(/\/+$/, "");
  const theme = themeFrom(deps.brandColour);
  const signer = createTokenSigner(deps.tokenKey);
  const served = deps.servedCountries ?? DEFAULT_SERVED_COUNTRIES;
  const limits = deps.limits ?? defaultPaymentLimits;
  const record =
    deps.requestPayment ??
    ((actor: Actor, input: PaymentRequest) => requestPayment(deps.ctx, actor, input, limits));
  const clientAddress = clientAddressReader(deps.trustedProxies, deps.clientAddress);
  const deviceTries = new AttemptLimiter(deps.voucherTriesPer5Min ?? 20, 5 * 60_000);
  const addressTries = new AttemptLimiter(deps.voucherTriesPerAddressPer5Min ?? 200, 5 * 60_000);
  const base = (router: PortalRouter) => `${basePath}/${encodeURIComponent(router.name)}`;

  app.use("*", limitBody(MAX_BODY));
  app.use("*", async (c, next) => {
    await next();
    c.header("Cache-Control", "no-store");
    c.header("X-Content-Type-Options", "nosniff");
    c.header("Referrer-Policy", "no-referrer");
  });

  async function routerOr404(c: Context): Promise<PortalRouter | null> {
    return findPortalRouter(deps.ctx.db, c.req.param("router") ?? "");
  }

  const wantsJson = (c: Context) =>
    (c.req.header("content-type") ?? "").includes("application/json") ||
    (c.req.header("accept") ?? "").startsWith("application/json");

  async function readBody(c: Context): Promise<Record<string, unknown> | null> {
    try {
      if ((c.req.header("content-type") ?? "").includes("application/json")) {
        const body: unknown = await c.req.json();
        return body && typeof body === "object" && !Array.isArray(body)
          ? (body as Record<string, unknown>)
          : null;
      }
      return (await c.req.parseBody()) as Record<string, unknown>;
    } catch {
      return null;
    }
  }

  async function page(
    c: Context,
    router: PortalRouter,
    language: PortalLanguage,
    hotspot: HotspotVars,
    view: PageView,
    status: 200 | 400 | 404 | 409 | 429 = 200,
  ) {
    const plans = (await hotspotPlans(deps.ctx.db)).map((p) => planCard(p, language));
    const body = await renderPortalPage({
      language,
      isp: deps.ispName,
      supportPhone: deps.supportPhone,
      theme,
      base: base(router),
      plans,
      hotspot,
      loginHosts: deps.loginHosts ?? [],
      key: randomBytes(16).toString("hex"),
      view,
      pollMs: deps.pollMs ?? 2000,
    });
    return c.html(body, status);
  }

  const notFound = (c: Context) => c.text("Not Found", 404);

  app.get("/:router/login.html", async (c) => {
    const router = await routerOr404(c);
    if (!router) return notFound(c);
    const portalUrl = `${deps.publicUrl.replace(/\/+$/, "")}${base(router)}`;
    c.header("Content-Disposition", 'attachment; filename="login.html"');
    return c.body(hotspotLoginHtml({ portalUrl, ispName: deps.ispName }), 200, {
      "Content-Type": "text/html; charset=utf-8",
    });
  });

  app.get("/:router/status/:token", async (c) => {
    const router = await routerOr404(c);
    const intentId = router ? signer.verify(router.id, c.req.param("token")) : null;
    if (!router || intentId === null) return c.json({ error: "not found" }, 404);
    const language = portalLanguage(c.req.query("lang"));
    const status = await portalPaymentStatus(deps.ctx.db, intentId, language, deps.supportPhone);
    if (!status) return c.json({ error: "not found" }, 404);
    const { amountCents: _amount, ...answer } = status;
    return c.json(answer);
  });

  app.get("/:router", async (c) => {
    const router = await routerOr404(c);
    if (!router) return notFound(c);
    const query = c.req.query();
    const language = portalLanguage(query.lang);
    const hotspot = readHotspotVars(query);
    const token = query.t;
    if (token) {
      // Where a form post (no script) lands: the payment as it stands now.
      const intentId = signer.verify(router.id, token);
      const status =
        intentId === null
          ? null
          : await portalPaymentStatus(deps.ctx.db, intentId, language, deps.supportPhone);
      if (status) return page(c, router, language, hotspot, { kind: "wait", token, status });
    }
    return page(c, router, language, hotspot, { kind: "buy" });
  });

  app.post("/:router/pay", async (c) => {
    const router = await routerOr404(c);
    if (!router) return notFound(c);
    const body = await readBody(c);
    const json = wantsJson(c);
    const language = portalLanguage(body?.lang ?? c.req.query("lang"));
    const hotspot = actingHotspotVars({ ...c.req.query(), ...(body ?? {}) });
    const phoneInput = typeof body?.phone === "string" ? body.phone : "";
    // `<id>:<price in cents>`, as the page shows the package (a bare id: a client that names no price).
    const [planId = Number.NaN, shownCents] = String(body?.plan ?? "")
      .split(":")
      .map((part) => (/^\d{1,12}$/.test(part) ? Number(part) : Number.NaN));
    const refuse = (message: string, status: 400 | 409 | 429 = 400) =>
      json
        ? c.json({ error: message }, status)
        : page(
            c,
            router,
            language,
            hotspot,
            {
              kind: "buy",
              error: message,
              phone: phoneInput,
              planId: isRowId(planId) ? planId : undefined,
            },
            status,
          );
    const t = (key: PortalKey, params?: Record<string, string | number>) => pt(language, key, params);
    if (!body) return refuse(t("error.generic"));

    const verdict = checkPhone(phoneInput, served);
    if (verdict.kind === "invalid") return refuse(t("error.phone"));
    if (verdict.kind === "foreign") {
      const country = verdict.country ? countryName(verdict.country, language) : null;
      return refuse(
        country
          ? t("error.foreign.country", { isp: deps.ispName, country })
          : t("error.foreign.other", { isp: deps.ispName }),
      );
    }
    const plan = isRowId(planId) ? await hotspotPlan(deps.ctx.db, planId) : null;
    if (!plan) return refuse(t("error.plan"));
    // Bought only at the price the buyer saw: the page they get back (or the card the script
    // updates) shows the new one.
    if (shownCents !== undefined && shownCents !== plan.priceCents) {
      const card = planCard(plan, language);
      const message = t("error.price", { price: card.price });
      return json
        ? c.json({ error: message, plan: { choice: card.choice, price: card.price } }, 409)
        : refuse(message, 409);
    }
    const key = typeof body.key === "string" && KEY_PATTERN.test(body.key) ? body.key : null;
    if (!key) return refuse(t("error.generic"));
    const mac = deviceMac(hotspot);

    const result = await record(
      { kind: "subscriber", id: verdict.e164, channel: "portal" },
      {
        phone: verdict.e164,
        purpose: "voucher",
        amountCents: plan.priceCents,
        planId: plan.id,
        channel: "portal",
        language,
        // A device (by its MAC on this hotspot) gets the same per-session limit as a USSD session.
        ...(mac ? { channelSessionId: `${router.id}:${mac}` } : {}),
        // Bought at this hotspot: the code is made for this router, not live at every site.
        routerId: router.id,
        // The MAC is whatever the page sends; the address it comes from is not, and a whole site
        // shares it (the hotspot NATs its clients), so it is counted under a limit sized for a site.
        sourceId: `${router.id}:${clientAddress(c)}`,
        // The page's key: a double click, or a form sent twice, makes one prompt.
        idempotencyKey: `portal:${router.id}:${key}`,
      },
    );
    if (!result.ok) {
      if (result.reason === "rate_limited")
        return refuse(language === "en" ? result.message : t("error.busy"), 429);
      if (/not on sale/.test(result.message)) return refuse(t("error.plan"));
      if (/phone number/.test(result.message)) return refuse(t("error.phone"));
      // The page's key was first sent with another package or number (its answer lost, then the buyer
      // changed the form): that purchase stands, and the page offers a new key for this one.
      if (/already used/.test(result.message)) return refuse(t("error.key_used"));
      return refuse(language === "en" ? result.message : t("error.generic"));
    }
    const token = signer.sign(router.id, result.intentId);
    deps.logger.info({ router: router.id, intentId: result.intentId }, "portal: voucher payment requested");
    if (json) return c.json({ intentId: result.intentId, token });
    return c.redirect(`${base(router)}${hotspotQuery(hotspot, { lang: language, t: token })}`, 303);
  });

  app.post("/:router/voucher", async (c) => {
    const router = await routerOr404(c);
    if (!router) return notFound(c);
    const body = await readBody(c);
    const json = wantsJson(c);
    const language = portalLanguage(body?.lang ?? c.req.query("lang"));
    const hotspot = actingHotspotVars({ ...c.req.query(), ...(body ?? {}) });
    const refuse = (key: PortalKey, status: 400 | 404 | 429 = 400) =>
      json
        ? c.json({ error: pt(language, key) }, status)
        : page(c, router, language, hotspot, { kind: "buy", voucherError: pt(language, key) }, status);
    const code = typeof body?.code === "string" ? body.code : "";
    if (!code.trim()) return refuse("voucher.empty");
    // Every device at a hotspot shares its address: one person guessing is held to their own
    // device's tries. The device is only what the page says, so the site's lookups are capped too.
    const site = `${router.id}|${clientAddress(c)}`;
    const device = `${site}|${deviceMac(hotspot) || hotspot.ip}`;
    if (!deviceTries.allows(device)) return refuse("voucher.too_many", 429);
    deviceTries.record(device);
    if (!addressTries.allows(site)) {
      // Someone claiming a new device at every guess has spent the site's lookups. Refusing now would
      // lock every visitor's printed code out; the code goes to the hotspot's own login unchecked
      // instead, which lets in only a code that is on the router, and this answer, the same for any
      // code, tells a guesser nothing.
      const typed = printedCodeShape(code);
      if (typed === null) return refuse("voucher.unknown", 404);
      if (json) return c.json({ username: typed, password: typed, unchecked: true });
      return page(c, router, language, hotspot, {
        kind: "login",
        username: typed,
        password: typed,
        unchecked: true,
      });
    }
    addressTries.record(site);
    const check = await checkPrintedVoucher(deps.ctx.db, router.id, code, deps.ctx.clock.now());
    if (!check.ok) return refuse(`voucher.${check.reason}`, check.reason === "unknown" ? 404 : 400);
    if (json) return c.json({ username: check.username, password: check.password });
    return page(c, router, language, hotspot, {
      kind: "login",
      username: check.username,
      password: check.password,
    });
  });

  return app;
}

/** The hotspot variables a purchase or a code carries on: a login refused before it is history now. */
function actingHotspotVars(source: Record<string, unknown>): HotspotVars {
  return { ...readHotspotVars(source), error: "" };
}

const regionNames = new Map<PortalLanguage, Intl.DisplayNames>();
function countryName(country: string, language: PortalLanguage): string | null {
  let names = regionNames.get(language);
  if (!names) {
    names = new Intl.DisplayNames([language], { type: "region", fallback: "none" });
    regionNames.set(language, names);
  }
  try {
    return names.of(country) ?? null;
  } catch {
    return null;
  }
}

/**
 * A sliding window of attempts per key, in memory (per instance): enough to slow guessing. Asking
 * and recording are apart so that an attempt another limit refuses is not counted here.
 */
class AttemptLimiter {
  private readonly hits = new Map<string, number[]>();
  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
  ) {}
  private recent(key: string): number[] {
    const since = Date.now() - this.windowMs;
    const recent = (this.hits.get(key) ?? []).filter((t) => t > since);
    if (recent.length > 0) this.hits.set(key, recent);
    else this.hits.delete(key);
    return recent;
  }
  allows(key: string): boolean {
    return this.recent(key).length < this.limit;
  }
  record(key: string): void {
    const recent = this.recent(key);
    recent.push(Date.now());
    this.hits.delete(key);
    this.hits.set(key, recent);
    if (this.hits.size > 10_000) this.hits.delete(this.hits.keys().next().value!);
  }
}
