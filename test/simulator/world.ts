import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { createApp } from "../../src/app.ts";
import type { BillingContext } from "../../src/billing/context.ts";
import { startSandboxTelegram } from "../../src/bots/telegram/sandbox.ts";
import { startSandboxWhatsApp } from "../../src/bots/whatsapp-cloud/sandbox.ts";
import { systemClock } from "../../src/clock.ts";
import { billingSettingsFrom, loadConfig, signingOf } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { startMessaging } from "../../src/messaging/index.ts";
import { startNetwork, startSandboxRouter } from "../../src/network/index.ts";
import { findRouterByName } from "../../src/network/routers.ts";
import { startPayments } from "../../src/payments/index.ts";
import { seedSandbox } from "../../src/sandbox/seed.ts";
import { mountSimulator } from "../../src/simulator/index.ts";
import { menuSettingsFrom, ussdRoutesFrom } from "../../src/ussd/index.ts";
import { box } from "../network/support.ts";
import { createTestDatabase } from "../support/db.ts";

const silent = createLogger("silent");

/**
 * A fresh sandbox started as src/main.ts starts it (fakes for M-Pesa and SMS, the emulated router
 * filled by reconciliation, the seeded demo subscriber), on a real port, with the simulator mounted.
 */
export async function startSandboxWorld() {
  const database = await createTestDatabase();
  const dataDir = mkdtempSync(join(tmpdir(), "tandao-simulator-"));
  // The port is known before the app exists: Daraja's callbacks are posted to PUBLIC_URL.
  let handle: (request: Request) => Response | Promise<Response> = () =>
    new Response("starting", { status: 503 });
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: (request) => handle(request), port: 0, hostname: "127.0.0.1" }, () =>
      resolve(s),
    );
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  const config = loadConfig({ DATA_DIR: dataDir, PORT: String(port), PUBLIC_URL: url, SCHEDULER: "false" });
  const ctx: BillingContext = { db: database.db, clock: systemClock, settings: billingSettingsFrom(config) };

  const emulator = await startSandboxRouter(database.db, box, silent);
  if (!emulator) throw new Error("the sandbox router did not start");
  const row = await findRouterByName(database.db, "sandbox");
  await seedSandbox(ctx, row?.id ?? null);
  const network = startNetwork({
    db: database.db,
    clock: systemClock,
    logger: silent,
    box,
    config,
    worker: { pollMs: 100 },
  });
  const filled = await network.reconcile();
  if (filled.status !== "ok") throw new Error(`sandbox reconcile: ${filled.status}`);
  const messaging = await startMessaging({ config, db: database.db, clock: systemClock, logger: silent });
  const payments = await startPayments({ config, ctx, logger: silent });
  if (!payments.fake || !messaging.fake) throw new Error("sandbox fakes did not start");

  const app = createApp({
    db: database.db,
    logger: silent,
    mode: config.mode,
    ussdRoutes: ussdRoutesFrom({ config, ctx, logger: silent, requestPayment: payments.request }),
    mpesaRoutes: payments.routes,
  });
  // The chat bots on their fakes, as in sandbox mode (any free port here).
  const chat = {
    ctx,
    settings: menuSettingsFrom(config),
    logger: silent,
    requestPayment: payments.request,
    servedCountries: config.SERVED_COUNTRIES,
    port: 0,
    signing: signingOf(config),
  };
  const telegram = await startSandboxTelegram(chat);
  const whatsapp = await startSandboxWhatsApp({ ...chat, appUrl: url });
  app.route("/hooks/wa", whatsapp.channel.routes);
  // The wiring main.ts uses in sandbox mode.
  mountSimulator(app, config, {
    daraja: payments.fake,
    sms: messaging.fake,
    router: emulator,
    telegramUrl: telegram.fake.apiRoot,
    whatsappUrl: new URL(whatsapp.fake.graphUrl).origin,
    pollMs: 500,
  });
  handle = app.fetch;

  return {
    url,
    config,
    database,
    emulator,
    daraja: payments.fake,
    sms: messaging.fake,
    async close() {
      await new Promise<void>((resolve) => {
        if ("closeAllConnections" in server) server.closeAllConnections();
        server.close(() => resolve());
      });
      await whatsapp.stop();
      await telegram.stop();
      await payments.stop();
      await messaging.stop();
      await network.stop();
      await emulator.stop();
      await database.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export type SandboxWorld = Awaited<ReturnType<typeof startSandboxWorld>>;
