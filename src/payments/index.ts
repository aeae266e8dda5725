import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { Cron } from "croner";
import type { Hono } from "hono";
import type { Actor, BillingContext } from "../billing/context.ts";
import {
  type PaymentLimits,
  type PaymentRequest,
  type RequestPaymentResult,
  requestPayment,
} from "../billing/intents/request.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { paymentLimitsFrom } from "./limits.ts";
import { DarajaClient, darajaHosts } from "./mpesa/daraja.ts";
import { StkDispatcher } from "./mpesa/dispatcher.ts";
import { FakeDaraja } from "./mpesa/fake.ts";
import { retryInbox } from "./mpesa/inbox-retry.ts";
import { type RecoveryOptions, scheduleRecovery } from "./mpesa/recovery.ts";
import { callbackPaths, createMpesaInbox, forbiddenUrlWords, type MpesaRoutes } from "./routes.ts";

export { paymentLimitsFrom } from "./limits.ts";

export interface Payments {
  /** Mounted by the app under `/hooks/mp` (see `callbackPaths`). */
  routes: Hono;
  /** The inbox behind the routes, and how a stored request is processed again. */
  mpesa: MpesaRoutes;
  client: DarajaClient;
  dispatcher: StkDispatcher;
  limits: PaymentLimits;
  /** `requestPayment` plus an immediate dispatch, for channel adapters that hold this object. */
  request(actor: Actor, input: PaymentRequest): Promise<RequestPaymentResult>;
  /** The built-in Daraja stand-in, in sandbox mode only. */
  fake: FakeDaraja | null;
  callbackToken: string;
  stop(): Promise<void>;
}

/**
 * Starts M-Pesa: the Daraja client (or, without credentials, the built-in fake on 127.0.0.1 whose
 * every push succeeds after about 2 s), the push dispatcher, the recovery job and the callback routes.
 */
export async function startPayments(deps: {
  config: Config;
  ctx: BillingContext;
  logger: Logger;
  /** Off in tests that drive the jobs by hand. */
  background?: boolean;
}): Promise<Payments> {
  const { config, ctx } = deps;
  const logger = deps.logger.child({ module: "mpesa" });
  const sandbox = config.mode === "sandbox";
  let fake: FakeDaraja | null = null;
  let client: DarajaClient;
  if (sandbox) {
    fake = await FakeDaraja.start({ defaultDelivery: { outcome: "success", delayMs: 2000 } });
    client = new DarajaClient({
      baseUrl: fake.url,
      consumerKey: fake.consumerKey,
      consumerSecret: fake.consumerSecret,
      shortcode: fake.shortcode,
      passkey: fake.passkey,
      clock: ctx.clock,
    });
    logger.info({ url: fake.url }, "M-Pesa sandbox: pushes go to the built-in fake and succeed after ~2 s");
  } else {
    // Production mode has checked these are set (src/mode.ts).
    if (!config.MPESA_SHORTCODE || !config.MPESA_PASSKEY || !config.MPESA_CONSUMER_SECRET)
      throw new Error("production needs MPESA_CONSUMER_SECRET, MPESA_SHORTCODE and MPESA_PASSKEY");
    client = new DarajaClient({
      baseUrl:
        config.MPESA_BASE_URL ?? darajaHosts[config.MPESA_ENV === "production" ? "production" : "test"],
      consumerKey: config.MPESA_CONSUMER_KEY!,
      consumerSecret: config.MPESA_CONSUMER_SECRET,
      shortcode: config.MPESA_SHORTCODE,
      passkey: config.MPESA_PASSKEY,
      till: config.MPESA_TILL,
      clock: ctx.clock,
    });
  }

  let token = config.MPESA_CALLBACK_TOKEN;
  if (!token) {
    if (!sandbox)
      throw new Error("MPESA_CALLBACK_TOKEN must be set: it keeps strangers off the callback URLs");
    token = randomBytes(16).toString("hex");
  }
  if (forbiddenUrlWords.test(token))
    throw new Error("MPESA_CALLBACK_TOKEN contains a word Safaricom refuses in URLs");
  const base = config.PUBLIC_URL.replace(/\/+$/, "");
  if (forbiddenUrlWords.test(base))
    logger.warn("PUBLIC_URL contains a word Safaricom refuses in callback URLs");

  const dispatcher = new StkDispatcher({
    ctx,
    gateway: client,
    logger,
    callbackUrl: `${base}${callbackPaths.stk(token)}`,
    // Channel adapters that call requestPayment directly (no kick) still see their push go out fast.
    pollMs: 250,
  });
  const recoveryOptions: RecoveryOptions = {
    ctx,
    gateway: client,
    logger,
    pendingSeconds: config.MPESA_PENDING_RECOVERY_SECONDS,
    giveUpSeconds: config.MPESA_PENDING_TIMEOUT_SECONDS,
  };
  const mpesa = createMpesaInbox({
    ctx,
    logger,
    token,
    allowedIps: config.MPESA_ALLOWED_IPS,
    trustedProxies: config.TRUST_PROXY,
    rejectUnknownAccounts: config.MPESA_C2B_REJECT_UNKNOWN,
    shortcode: fake ? fake.shortcode : (config.MPESA_TILL ?? config.MPESA_SHORTCODE ?? null),
    spoolDir: join(config.DATA_DIR, "spool", "mpesa"),
  });
  const { routes } = mpesa;
  const background = deps.background ?? true;
  const recovery = background
    ? scheduleRecovery({ ...recoveryOptions, everySeconds: 30, scheduler: config.SCHEDULER })
    : null;
  if (background) dispatcher.start();
  // Every instance imports its own spool; the failed requests of all are retried by scheduler instances.
  const inboxRetry = background
    ? new Cron("*/30 * * * * *", { protect: true, name: "mpesa-inbox-retry" }, async () => {
        const counts = await retryInbox(mpesa, { claim: config.SCHEDULER }).catch((error: unknown) => {
          logger.error({ err: error }, "M-Pesa inbox retry failed");
          return null;
        });
        if (counts && (counts.imported || counts.retried))
          logger.info({ counts }, "M-Pesa inbox: stored requests processed again");
      })
    : null;
  const limits = paymentLimitsFrom(config);

  if (config.MPESA_REGISTER_C2B && !sandbox) {
    // Outside the start-up path: a Daraja hiccup must not keep the service from starting.
    void client
      .registerC2bUrls({
        confirmationUrl: `${base}${callbackPaths.c2bConfirmation(token)}`,
        validationUrl: `${base}${callbackPaths.c2bValidation(token)}`,
      })
      .then(() => logger.info("C2B URLs registered"))
      .catch((error: unknown) => logger.error({ err: error }, "C2B URL registration failed"));
  }

  return {
    routes,
    mpesa,
    client,
    dispatcher,
    limits,
    fake,
    callbackToken: token,
    async request(actor, input) {
      const result = await requestPayment(ctx, actor, input, limits);
      if (result.ok) dispatcher.kick();
      return result;
    },
    async stop() {
      recovery?.stop();
      inboxRetry?.stop();
      await dispatcher.stop();
      await fake?.close();
    },
  };
}
