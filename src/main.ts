import { serve } from "@hono/node-server";
import { createApp } from "./app.ts";
import type { BillingContext } from "./billing/context.ts";
import { billingJobs } from "./billing/jobs.ts";
import { adminAlertJobs, adminTelegramFrom, startSandboxAdminTelegram } from "./bots/admin/index.ts";
import { sendWhatsAppQrToAdmins } from "./bots/admin/whatsapp-qr.ts";
import { chatJobs } from "./bots/jobs.ts";
import { telegramFrom } from "./bots/telegram/index.ts";
import { startSandboxTelegram } from "./bots/telegram/sandbox.ts";
import { whatsappCloudFrom } from "./bots/whatsapp-cloud/index.ts";
import { startSandboxWhatsApp } from "./bots/whatsapp-cloud/sandbox.ts";
import { systemClock } from "./clock.ts";
import { billingSettingsFrom, type Config, isSandbox, loadConfig, signingOf } from "./config.ts";
import { type Database, openDatabase } from "./db/client.ts";
import { DataDirInUseError } from "./db/data-dir-lock.ts";
import { hasEmbeddedDatabase, seedEmbeddedDatabase } from "./db/embedded-template.ts";
import { claimDatabaseMode, DatabaseModeError } from "./db/mode-guard.ts";
import { sealPlainSecrets } from "./db/seal-existing.ts";
import { useSealingKey } from "./db/sealed.ts";
import { jobHistoryJobs } from "./jobs/history.ts";
import { jobsFinished } from "./jobs/runner.ts";
import { type ScheduledJob, startScheduler } from "./jobs/scheduler.ts";
import { createSecretBox, loadSecretKey } from "./lib/secret-box.ts";
import { createLogger } from "./logger.ts";
import { menuJobs } from "./menu/jobs.ts";
import { startMessaging } from "./messaging/index.ts";
import { ModeError } from "./mode.ts";
import { activeSessionOn, type SessionKind } from "./network/active-sessions.ts";
import { startNetwork, startSandboxRouter } from "./network/index.ts";
import { findRouterByName } from "./network/routers.ts";
import { startPayments } from "./payments/index.ts";
import { createPortalRoutes, portalTokenKey } from "./portal/index.ts";
import { DEMO_PHONE, seedSandbox } from "./sandbox/seed.ts";
import { mountSimulator } from "./simulator/index.ts";
import { menuSettingsFrom, ussdRoutesFrom } from "./ussd/index.ts";

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  // Named settings only, never their values.
  console.error(error instanceof ModeError ? error.problems.map((p) => `- ${p}`).join("\n") : String(error));
  console.error("Tandao did not start: fix the settings above (see the README's production checklist).");
  process.exit(1);
}
const logger = createLogger(config.LOG_LEVEL);
const clock = systemClock;

let database: Database;
try {
  database = await openDatabase({
    databaseUrl: config.DATABASE_URL,
    dataDir: config.DATA_DIR,
    // A new embedded database starts as a copy of the migrated one `npm install` made (a fast first start).
    beforeOpen: (dataDir) => {
      if (!hasEmbeddedDatabase(dataDir)) seedEmbeddedDatabase(dataDir);
    },
    lock: {
      clock,
      // Stalled past its heartbeat (a paused container), this app lost the folder to another opener:
      // writing on beside it would lose one side's changes.
      onLost: (holder) => {
        logger.fatal({ holder }, "the embedded database was taken over by another opener; stopping");
        process.exit(1);
      },
    },
  });
} catch (error) {
  if (!(error instanceof DataDirInUseError)) throw error;
  console.error(`Tandao did not start: ${error.message}.`);
  process.exit(1);
}
await database.migrate();
logger.info({ database: database.kind, location: database.location }, `data lives in ${database.location}`);
const sandbox = isSandbox(config);
try {
  await claimDatabaseMode(database.db, sandbox ? "sandbox" : "production", clock.now());
} catch (error) {
  if (!(error instanceof DatabaseModeError)) throw error;
  console.error(`Tandao did not start: ${error.message}.`);
  await database.close();
  process.exit(1);
}
// Router and PPPoE passwords are sealed with SECRET_KEY (sandbox: a key kept in DATA_DIR).
const secretKey = loadSecretKey({ secretKey: config.SECRET_KEY, dataDir: config.DATA_DIR, sandbox });
const secretBox = createSecretBox(secretKey);
useSealingKey(secretBox);
const newlySealed = await sealPlainSecrets(database.db);
if (newlySealed > 0) logger.info({ count: newlySealed }, "PPPoE passwords sealed at rest");
if (sandbox)
  logger.warn(
    "SANDBOX MODE: every outside service is a built-in fake (M-Pesa, SMS, router); no real money moves. Set TANDAO_MODE=production for real use.",
  );
else logger.info("production mode: real M-Pesa, SMS and routers only");

const billing: BillingContext = {
  db: database.db,
  clock,
  settings: billingSettingsFrom(config),
};

const adminBotConfigured = Boolean(
  config.TELEGRAM_ADMIN_BOT_TOKEN && config.TELEGRAM_ADMIN_WEBHOOK_SECRET && config.TELEGRAM_OWNER_ID,
);

/** Everything started below is stopped, in reverse order, on shutdown. */
const stops: (() => unknown)[] = [];

/** Runs every job once (a restart catches up at once), after the server listens: on the embedded
 * database, whose one connection the start-up's own queries wait for, it would delay the start. */
let catchUpJobs = () => {};
if (config.SCHEDULER) {
  const scheduler = startScheduler({ db: database.db, clock, logger, timezone: config.TIMEZONE }, [
    ...billingJobs.map(
      (job): ScheduledJob => ({ name: job.name, schedule: job.schedule, run: (tx) => job.run(tx, billing) }),
    ),
    ...menuJobs(clock),
    ...chatJobs(clock),
    ...jobHistoryJobs(clock),
    // Alerts to the admin chat (router down and up, dead jobs, unmatched payments, sign-ups, the
    // daily summary) whenever an admin bot can deliver them.
    ...(adminBotConfigured || (sandbox && !config.TELEGRAM_ADMIN_BOT_TOKEN)
      ? adminAlertJobs({
          clock,
          timezone: config.TIMEZONE,
          chatIds: config.TELEGRAM_ADMIN_CHATS,
          dailySummaryHour: config.ADMIN_DAILY_SUMMARY_HOUR,
        })
      : []),
  ]);
  stops.push(scheduler.stop);
  catchUpJobs = () => void scheduler.runAll();
}

const sandboxRouter = sandbox ? await startSandboxRouter(database.db, secretBox, logger) : null;
if (sandboxRouter) stops.push(() => sandboxRouter.stop());
if (sandbox) {
  const router = await findRouterByName(database.db, "sandbox");
  if (await seedSandbox(billing, router?.id ?? null))
    logger.info({ phone: DEMO_PHONE }, `sandbox: demo plans and a demo subscriber (${DEMO_PHONE}) created`);
}
const network = startNetwork({ db: database.db, clock, logger, box: secretBox, config });
stops.push(network.stop);
/** What the admin chat may ask of the routers: reconcile, online status, reconnect after an edit. */
const adminNetwork = {
  ...network,
  activeSession: (routerId: number, kind: SessionKind, username: string) =>
    activeSessionOn(network.pool, routerId, kind, username),
  routerChanged: (routerId: number) => network.pool.invalidate(routerId),
};
// The emulated router starts empty at each start: fill it from the database.
if (sandboxRouter)
  void network
    .reconcile()
    .then((run) => {
      if (run.status !== "ok") logger.warn({ status: run.status, error: run.error }, "sandbox reconcile");
    })
    .catch((error) => logger.error({ err: error }, "sandbox reconcile failed"));

const messaging = await startMessaging({ config, db: database.db, clock, logger });
stops.push(messaging.stop);

// M-Pesa: push dispatcher, recovery job and callback routes (sandbox: the built-in Daraja fake).
const payments = await startPayments({ config, ctx: billing, logger });
stops.push(payments.stop);

const app = createApp({
  db: database.db,
  logger,
  mode: config.mode,
  ussdRoutes: ussdRoutesFrom({ config, ctx: billing, logger, requestPayment: payments.request }),
  mpesaRoutes: payments.routes,
  clock,
  ...(config.METRICS_TOKEN ? { metricsToken: config.METRICS_TOKEN } : {}),
});
// The hotspot's captive portal: packages sold by M-Pesa, with the same limits as every channel.
app.route(
  "/portal",
  createPortalRoutes({
    ctx: billing,
    logger,
    ispName: config.ISP_NAME,
    supportPhone: config.SUPPORT_PHONE,
    brandColour: config.PORTAL_BRAND_COLOR,
    servedCountries: config.SERVED_COUNTRIES,
    // Status tokens are signed with a key of their own, derived from SECRET_KEY.
    tokenKey: portalTokenKey(secretKey),
    requestPayment: payments.request,
    publicUrl: config.PORTAL_URL ?? config.PUBLIC_URL,
    loginHosts: config.HOTSPOT_LOGIN_HOSTS,
    trustedProxies: config.TRUST_PROXY,
  }),
);
// Sandbox listens on this machine only unless told otherwise; production behind its proxy.
const host = config.HOST ?? (sandbox ? "127.0.0.1" : "0.0.0.0");
// The Telegram subscriber bot, served by webhook (production, with TELEGRAM_BOT_TOKEN).
if (config.TELEGRAM_BOT_TOKEN && config.TELEGRAM_WEBHOOK_SECRET) {
  const telegram = telegramFrom({
    config,
    ctx: billing,
    logger,
    token: config.TELEGRAM_BOT_TOKEN,
    secretToken: config.TELEGRAM_WEBHOOK_SECRET,
    requestPayment: payments.request,
  });
  app.route("/hooks/tg", telegram.routes);
  stops.push(telegram.stop);
  // Outside the start-up path: Telegram being unreachable must not keep the service from starting.
  void telegram.bot
    .init()
    .then(() =>
      telegram.bot.api.setWebhook(`${config.PUBLIC_URL.replace(/\/+$/, "")}/hooks/tg`, {
        secret_token: config.TELEGRAM_WEBHOOK_SECRET,
      }),
    )
    .then(() => logger.info("Telegram webhook set"))
    .catch((error: unknown) => logger.error({ err: error }, "Telegram webhook could not be set"));
}

// The sandbox fakes' addresses, for the simulator's chat pane.
let telegramSandboxUrl: string | undefined;
let whatsappSandboxUrl: string | undefined;

// Sandbox without a bot token: the real bot long-polls a fake Bot API on 127.0.0.1 (curl-able).
if (sandbox && !config.TELEGRAM_BOT_TOKEN) {
  const telegramSandbox = await startSandboxTelegram({
    ctx: billing,
    settings: menuSettingsFrom(config),
    logger,
    requestPayment: payments.request,
    servedCountries: config.SERVED_COUNTRIES,
    port: config.TELEGRAM_SANDBOX_PORT,
    signing: signingOf(config),
  });
  stops.push(telegramSandbox.stop);
  telegramSandboxUrl = telegramSandbox.fake.apiRoot;
  logger.info(`sandbox: Telegram bot on a fake Bot API at ${telegramSandbox.fake.apiRoot}`);
}

// The admin bot: the ISP's staff run the business from Telegram (production, with its own token).
if (
  adminBotConfigured &&
  config.TELEGRAM_ADMIN_BOT_TOKEN &&
  config.TELEGRAM_ADMIN_WEBHOOK_SECRET &&
  config.TELEGRAM_OWNER_ID
) {
  const adminBot = await adminTelegramFrom({
    network: adminNetwork,
    box: secretBox,
    ctx: billing,
    logger,
    token: config.TELEGRAM_ADMIN_BOT_TOKEN,
    secretToken: config.TELEGRAM_ADMIN_WEBHOOK_SECRET,
    ownerTelegramId: config.TELEGRAM_OWNER_ID,
    adminChatIds: config.TELEGRAM_ADMIN_CHATS,
    ispName: config.ISP_NAME,
    servedCountries: config.SERVED_COUNTRIES,
    ...(config.HOTSPOT_LOGIN_URL ? { hotspotLoginUrl: config.HOTSPOT_LOGIN_URL } : {}),
  });
  app.route("/hooks/tg-admin", adminBot.routes);
  stops.push(adminBot.stop);
  void adminBot.bot
    .init()
    .then(() =>
      adminBot.bot.api.setWebhook(`${config.PUBLIC_URL.replace(/\/+$/, "")}/hooks/tg-admin`, {
        secret_token: config.TELEGRAM_ADMIN_WEBHOOK_SECRET,
      }),
    )
    .then(() => logger.info("Telegram admin webhook set"))
    .catch((error: unknown) => logger.error({ err: error }, "Telegram admin webhook could not be set"));
}

// Sandbox: the admin bot on a second fake Bot API; user 1 (the fake's curl default) is the owner
// unless TELEGRAM_OWNER_ID names another. Production has no default owner.
if (sandbox && !config.TELEGRAM_ADMIN_BOT_TOKEN) {
  const adminSandbox = await startSandboxAdminTelegram({
    network: adminNetwork,
    box: secretBox,
    ctx: billing,
    logger,
    ownerTelegramId: config.TELEGRAM_OWNER_ID ?? 1,
    port: config.TELEGRAM_ADMIN_SANDBOX_PORT,
    ispName: config.ISP_NAME,
    servedCountries: config.SERVED_COUNTRIES,
    ...(config.HOTSPOT_LOGIN_URL ? { hotspotLoginUrl: config.HOTSPOT_LOGIN_URL } : {}),
  });
  stops.push(adminSandbox.stop);
  logger.info(`sandbox: Telegram admin bot on a fake Bot API at ${adminSandbox.fake.apiRoot}`);
}

// WhatsApp Web: the ISP's own number as a linked device (Chromium); its login QR is in the log.
if (config.WHATSAPP_WEB === "on") {
  // Loaded only when turned on: it brings puppeteer and whatsapp-web.js.
  const { whatsappWebFrom } = await import("./bots/whatsapp-web/index.ts");
  const whatsappWeb = whatsappWebFrom({
    config,
    ctx: billing,
    logger,
    requestPayment: payments.request,
    // The login QR also goes to the admin chat as a picture, when there is one.
    ...(adminBotConfigured || sandbox
      ? {
          onQr: (qr: string) =>
            sendWhatsAppQrToAdmins(billing, qr, config.TELEGRAM_ADMIN_CHATS).then(
              () => undefined,
              (error: unknown) =>
                logger.error({ err: error }, "WhatsApp login QR not queued for the admin chat"),
            ),
        }
      : {}),
  });
  stops.push(whatsappWeb.stop);
}

// The WhatsApp Cloud API subscriber menu (webhook; replies go out after the webhook is answered).
if (
  config.WHATSAPP_CLOUD_TOKEN &&
  config.WHATSAPP_CLOUD_PHONE_NUMBER_ID &&
  config.WHATSAPP_CLOUD_APP_SECRET &&
  config.WHATSAPP_CLOUD_VERIFY_TOKEN
) {
  const whatsapp = whatsappCloudFrom({
    config,
    ctx: billing,
    logger,
    token: config.WHATSAPP_CLOUD_TOKEN,
    phoneNumberId: config.WHATSAPP_CLOUD_PHONE_NUMBER_ID,
    appSecret: config.WHATSAPP_CLOUD_APP_SECRET,
    verifyToken: config.WHATSAPP_CLOUD_VERIFY_TOKEN,
    requestPayment: payments.request,
  });
  app.route("/hooks/wa", whatsapp.routes);
  stops.push(whatsapp.stop);
}

// Sandbox without Cloud API credentials: the channel behind /hooks/wa, fed by a fake Graph API (curl-able).
if (sandbox && !config.WHATSAPP_CLOUD_TOKEN) {
  const whatsappSandbox = await startSandboxWhatsApp({
    ctx: billing,
    settings: menuSettingsFrom(config),
    logger,
    appUrl: `http://127.0.0.1:${config.PORT}`,
    requestPayment: payments.request,
    servedCountries: config.SERVED_COUNTRIES,
    port: config.WHATSAPP_SANDBOX_PORT,
    signing: signingOf(config),
  });
  app.route("/hooks/wa", whatsappSandbox.channel.routes);
  stops.push(whatsappSandbox.stop);
  whatsappSandboxUrl = new URL(whatsappSandbox.fake.graphUrl).origin;
  logger.info(`sandbox: WhatsApp Cloud API channel on a fake Graph API at ${whatsappSandbox.fake.graphUrl}`);
}

// Sandbox only: the phone simulator in the browser (USSD, M-Pesa prompt, SMS, chats, router).
if (sandbox && payments.fake)
  mountSimulator(app, config, {
    daraja: payments.fake,
    sms: messaging.fake,
    router: sandboxRouter,
    telegramUrl: telegramSandboxUrl,
    whatsappUrl: whatsappSandboxUrl,
  });

const server = serve({ fetch: app.fetch, port: config.PORT, hostname: host }, (info) => {
  const shown = info.family === "IPv6" ? `[${info.address}]` : info.address;
  logger.info({ address: info.address, port: info.port }, `listening on http://${shown}:${info.port}`);
  catchUpJobs();
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, "shutting down");
  await new Promise<void>((resolve) => server.close(() => resolve()));
  for (const stop of stops.reverse()) await stop();
  // A run of a job under way (reconciliation, M-Pesa recovery) records its end before the database closes.
  await jobsFinished(database.db);
  await database.close();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
