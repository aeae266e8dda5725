import { Hono } from "hono";
import type { BillingContext } from "../billing/context.ts";
import { billingJobs } from "../billing/jobs.ts";
import { systemClock } from "../clock.ts";
import { billingSettingsFrom, type Config, loadConfig } from "../config.ts";
import { ping } from "../db/client.ts";
import { useSealingKey } from "../db/sealed.ts";
import { runJob } from "../jobs/runner.ts";
import { slotOf } from "../jobs/scheduler.ts";
import { createSecretBox, parseSecretKey } from "../lib/secret-box.ts";
import type { Logger } from "../logger.ts";
import { createMenuServices } from "../menu/services.ts";
import { SessionCache } from "../menu/session-cache.ts";
import { createMpesaRoutes } from "../payments/routes.ts";
import { menuSettingsFrom } from "../ussd/index.ts";
import { createUssdRoutes } from "../ussd/routes.ts";
import { openWorkerDatabase, type WorkerDatabase } from "./db.ts";
import { createWorkerLogger } from "./logger.ts";
import type { ExecutionContext, ScheduledController, WorkerEnv } from "./types.ts";

/**
 * The Cloudflare Worker: Tandao's webhooks (Africa's Talking USSD, Daraja's M-Pesa callbacks)
 * and the billing jobs on Cron Triggers, on PostgreSQL through Hyperdrive. Everything that needs a
 * long-lived process or raw TCP to routers (provisioning, SMS and chat delivery, the M-Pesa push
 * dispatcher, WhatsApp Web) runs in the Node service on the same database: see docs/worker.md.
 */

/** The settings, parsed by the same code as the Node service's (src/config.ts), from vars and secrets. */
function settingsOf(env: WorkerEnv): Config {
  const strings: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) if (typeof value === "string") strings[key] = value;
  return loadConfig(strings);
}

/** What each USSD session has read, kept between its requests while this isolate lives. */
const ussdCache = new SessionCache();

interface Request {
  config: Config;
  logger: Logger;
  database: WorkerDatabase;
  billing: BillingContext;
}

/** The SECRET_KEY the sealed columns (PPPoE passwords) are opened with in this isolate. */
let sealingKey: string | undefined;

function open(env: WorkerEnv): Request {
  const config = settingsOf(env);
  // The Node service's key, never one of the Worker's own: both read and write the same rows.
  if (!config.SECRET_KEY)
    throw new Error("SECRET_KEY is required in the Worker (the Node service's, as a secret)");
  if (config.SECRET_KEY !== sealingKey) {
    useSealingKey(createSecretBox(parseSecretKey(config.SECRET_KEY)));
    sealingKey = config.SECRET_KEY;
  }
  const logger = createWorkerLogger(config.LOG_LEVEL, { runtime: "worker" });
  const database = openWorkerDatabase(env.HYPERDRIVE.connectionString);
  const billing: BillingContext = {
    db: database.db,
    clock: systemClock,
    settings: billingSettingsFrom(config),
  };
  return { config, logger, database, billing };
}

/** The HTTP surface of the Worker, bound to one request's database client. */
export function workerRoutes({ config, logger, billing }: Request): Hono {
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
  app.route(
    "/ussd",
    createUssdRoutes({
      db: billing.db,
      // No `requestPayment`: the intent is recorded, and the Node service's dispatcher sends the push.
      services: createMenuServices(billing),
      settings: menuSettingsFrom(config),
      logger: logger.child({ module: "ussd" }),
      token: config.USSD_TOKEN,
      allowedIps: config.USSD_ALLOWED_IPS,
      trustedProxies: config.TRUST_PROXY,
      cache: ussdCache,
    }),
  );
  // Without a callback token nothing is mounted: Daraja's URLs carry it (the Node side says the same).
  if (config.MPESA_CALLBACK_TOKEN)
    app.route(
      "/hooks/mp",
      createMpesaRoutes({
        ctx: billing,
        logger: logger.child({ module: "mpesa" }),
        token: config.MPESA_CALLBACK_TOKEN,
        allowedIps: config.MPESA_ALLOWED_IPS,
        trustedProxies: config.TRUST_PROXY,
        rejectUnknownAccounts: config.MPESA_C2B_REJECT_UNKNOWN,
        shortcode: config.MPESA_TILL ?? config.MPESA_SHORTCODE ?? null,
        // No spool: a Worker has no disk. A request the database cannot take answers 503, and
        // Daraja's own retry (C2B) or the Node side's status query (STK recovery) covers it.
      }),
    );
  app.onError((error, c) => {
    logger.error({ err: error, route: c.req.routePath }, "unhandled error");
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}

const app = new Hono<{ Bindings: WorkerEnv }>();
app.all("*", async (c) => {
  let request: Request;
  try {
    request = open(c.env);
  } catch (error) {
    // A configuration the Node service would refuse to start with: named problems only, no values.
    console.error(JSON.stringify({ level: 60, msg: "Tandao Worker misconfigured", error: String(error) }));
    return c.json({ error: "misconfigured" }, 500);
  }
  try {
    return await workerRoutes(request).fetch(c.req.raw);
  } finally {
    // The answer is not held up by closing; the connections go back to Hyperdrive's pool.
    c.executionCtx.waitUntil(request.database.close());
  }
});

/**
 * Cron Triggers: each trigger runs the billing jobs whose schedule is exactly its pattern
 * (wrangler.toml lists every `billingJobs` schedule), through the same runner as the Node
 * scheduler, with the same minute slot: a job already run for that slot by any instance, the
 * Node service's scheduler included, is skipped, so both may run the billing jobs.
 */
export async function scheduled(
  event: ScheduledController,
  env: WorkerEnv,
  _ctx: ExecutionContext,
): Promise<void> {
  const request = open(env);
  const { logger, billing, database } = request;
  const slot = slotOf(new Date(event.scheduledTime));
  const due = billingJobs.filter((job) => job.schedule === event.cron);
  if (due.length === 0) logger.warn({ cron: event.cron }, "no billing job has this schedule");
  try {
    for (const job of due) {
      const result = await runJob(billing.db, billing.clock, job.name, (tx) => job.run(tx, billing), slot);
      const line = { job: job.name, slot: slot.toISOString(), status: result.status, counts: result.counts };
      if (result.status === "failed") logger.error({ ...line, error: result.error }, "job failed");
      else logger.info(line, "job run");
    }
  } finally {
    await database.close();
  }
}

export default { fetch: app.fetch, scheduled };
