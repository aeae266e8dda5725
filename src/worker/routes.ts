import { AsyncLocalStorage } from "node:async_hooks";
import { Hono } from "hono";
import type { Actor, BillingContext } from "../billing/context.ts";
import { type PaymentLimits, type PaymentRequest, requestPayment } from "../billing/intents/request.ts";
import { telegramBotInfo, telegramWebhookFrom } from "../bots/telegram/webhook.ts";
import { whatsappCloudWebhookFrom } from "../bots/whatsapp-cloud/webhook.ts";
import type { Config } from "../config.ts";
import { type Db, ping } from "../db/client.ts";
import { cloudflareClientAddress } from "../lib/client-address.ts";
import type { Logger } from "../logger.ts";
import { createMenuServices } from "../menu/services.ts";
import { SessionCache } from "../menu/session-cache.ts";
import { paymentLimitsFrom } from "../payments/limits.ts";
import { createMpesaRoutes } from "../payments/routes.ts";
import { createPortalRoutes } from "../portal/routes.ts";
import { portalTokenKey } from "../portal/token-key.ts";
import { menuSettingsFrom } from "../ussd/index.ts";
import { createUssdRoutes } from "../ussd/routes.ts";

/**
 * The Worker's HTTP surface. Each route only records: an update or message is stored (chat_inbox)
 * and handled, its answers become `message_outbox` rows, a payment becomes a pending intent (the
 * core's `requestPayment` under the configured STK limits, as on Node; the Node service's
 * dispatcher sends the push). Nothing here calls Telegram, Meta's Graph API, Daraja or a router, and nothing outlives
 * its request.
 */

/** One request's view of the Worker: its settings, logger and database client. */
export interface WorkerRequest {
  config: Config;
  logger: Logger;
  billing: BillingContext;
  /** SECRET_KEY's bytes (the portal's token key is derived from them, as on Node). */
  secretKey: Uint8Array;
}

/** What each USSD session has read, kept between its requests while this isolate lives. */
const ussdCache = new SessionCache();

/** The database client of the request being served, for the routes built once per isolate. */
const requestDb = new AsyncLocalStorage<Db>();

/**
 * The portal is built once per isolate, not per request: its printed-voucher attempt limit lives in
 * memory and would otherwise start afresh at every guess. Its database is the request's own (a
 * Worker may not use one request's connection in another), read through `requestDb`.
 */
let portal: Hono | undefined;

function portalRoutes({ config, logger, billing, secretKey }: WorkerRequest, limits: PaymentLimits): Hono {
  portal ??= createPortalRoutes({
    ctx: {
      get db(): Db {
        const db = requestDb.getStore();
        if (!db) throw new Error("the portal was used outside a request");
        return db;
      },
      clock: billing.clock,
      settings: billing.settings,
    },
    logger,
    ispName: config.ISP_NAME,
    supportPhone: config.SUPPORT_PHONE,
    ...(config.PORTAL_BRAND_COLOR ? { brandColour: config.PORTAL_BRAND_COLOR } : {}),
    servedCountries: config.SERVED_COUNTRIES,
    limits,
    tokenKey: portalTokenKey(secretKey),
    publicUrl: config.PORTAL_URL ?? config.PUBLIC_URL,
    loginHosts: config.HOTSPOT_LOGIN_HOSTS,
    clientAddress: cloudflareClientAddress,
  });
  return portal;
}

/**
 * The routes for one request, bound to its database client. Only the channel the path names is
 * built (a grammY bot for a USSD request would be wasted work). `settled` resolves once the work a
 * route left running after its answer (WhatsApp messages are handled after Meta is answered) is
 * done: the caller keeps the request alive until then (`waitUntil`) and closes the client after.
 */
export function workerRoutes(request: WorkerRequest, path: string): { app: Hono; settled(): Promise<void> } {
  const { config, logger, billing } = request;
  const under = (prefix: string) => path === prefix || path.startsWith(`${prefix}/`);
  const after: (() => Promise<void>)[] = [];
  const limits = paymentLimitsFrom(config);
  const recordPayment = (actor: Actor, input: PaymentRequest) =>
    requestPayment(billing, actor, input, limits);
  const app = new Hono();
  app.get("/healthz", async (c) => {
    try {
      await ping(billing.db);
      return c.json({ status: "ok", database: "ok", mode: config.mode, runtime: "worker" });
    } catch (error) {
      logger.error({ err: error }, "health check failed");
      return c.json({ status: "error", database: "unreachable", mode: config.mode, runtime: "worker" }, 503);
    }
  });
  if (under("/ussd"))
    app.route(
      "/ussd",
      createUssdRoutes({
        db: billing.db,
        services: createMenuServices(billing, { requestPayment: recordPayment }),
        settings: menuSettingsFrom(config),
        logger: logger.child({ module: "ussd" }),
        token: config.USSD_TOKEN,
        allowedIps: config.USSD_ALLOWED_IPS,
        clientAddress: cloudflareClientAddress,
        cache: ussdCache,
      }),
    );
  // Without a callback token nothing is mounted: Daraja's URLs carry it (the Node side says the same).
  if (config.MPESA_CALLBACK_TOKEN && under("/hooks/mp"))
    app.route(
      "/hooks/mp",
      createMpesaRoutes({
        ctx: billing,
        logger: logger.child({ module: "mpesa" }),
        token: config.MPESA_CALLBACK_TOKEN,
        allowedIps: config.MPESA_ALLOWED_IPS,
        clientAddress: cloudflareClientAddress,
        rejectUnknownAccounts: config.MPESA_C2B_REJECT_UNKNOWN,
        shortcode: config.MPESA_TILL ?? config.MPESA_SHORTCODE ?? null,
        // No spool: a Worker has no disk. A request the database cannot take is tried again for a
        // few seconds (payments/inbox.ts), then answered 503 with its body in the error log: Daraja
        // does not resend, the Node side's status query covers an STK callback, and nothing covers
        // a paybill confirmation but an admin reading that log.
      }),
    );
  // The same route factory as Node's (the secret token checked before the body is read); a failed
  // update stays in chat_inbox as failed, and the Node service's retry loop handles it again.
  if (config.TELEGRAM_BOT_TOKEN && config.TELEGRAM_WEBHOOK_SECRET && under("/hooks/tg")) {
    const token = config.TELEGRAM_BOT_TOKEN;
    const secretToken = config.TELEGRAM_WEBHOOK_SECRET;
    let mounted: Hono;
    try {
      // With the token, what grammY would otherwise ask Telegram's `getMe` on every request.
      const botInfo = telegramBotInfo(token, config.TELEGRAM_BOT_USERNAME);
      mounted = telegramWebhookFrom({
        config,
        ctx: billing,
        logger,
        token,
        secretToken,
        botInfo,
        requestPayment: recordPayment,
      }).routes;
    } catch (error) {
      // Only this webhook is refused (Telegram keeps the updates and retries); the rest is served.
      const problem = error instanceof Error ? error.message : String(error);
      mounted = new Hono().all("*", (c) => {
        logger.error({ problem }, "Telegram webhook misconfigured");
        return c.json({ error: "misconfigured" }, 500);
      });
    }
    app.route("/hooks/tg", mounted);
  }
  // The webhook needs no access token: only the Node service, which sends, holds WHATSAPP_CLOUD_TOKEN.
  if (
    config.WHATSAPP_CLOUD_PHONE_NUMBER_ID &&
    config.WHATSAPP_CLOUD_APP_SECRET &&
    config.WHATSAPP_CLOUD_VERIFY_TOKEN &&
    under("/hooks/wa")
  ) {
    const whatsapp = whatsappCloudWebhookFrom({
      config,
      ctx: billing,
      logger,
      phoneNumberId: config.WHATSAPP_CLOUD_PHONE_NUMBER_ID,
      appSecret: config.WHATSAPP_CLOUD_APP_SECRET,
      verifyToken: config.WHATSAPP_CLOUD_VERIFY_TOKEN,
      requestPayment: recordPayment,
    });
    app.route("/hooks/wa", whatsapp.routes);
    after.push(whatsapp.idle);
  }
  if (under("/portal")) {
    app.use("/portal/*", (_c, next) => requestDb.run(billing.db, next));
    app.route("/portal", portalRoutes(request, limits));
  }
  app.onError((error, c) => {
    logger.error({ err: error, route: c.req.routePath }, "unhandled error");
    return c.json({ error: "internal error" }, 500);
  });
  return {
    app,
    async settled() {
      for (const wait of after) await wait();
    },
  };
}
