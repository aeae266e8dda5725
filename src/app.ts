import { Hono } from "hono";
import type { Clock } from "./clock.ts";
import { type Db, ping } from "./db/client.ts";
import type { Logger } from "./logger.ts";
import { createMetrics, metricsHandler, requestIdOf, requestLog } from "./metrics/index.ts";
import type { Mode } from "./mode.ts";

export interface AppDeps {
  db: Db;
  logger: Logger;
  /** Said in `/healthz`, so nobody mistakes a sandbox for the real thing. */
  mode?: Mode;
  /** Daraja's callbacks (`createMpesaRoutes`), served under `/hooks/mp`. */
  mpesaRoutes?: Hono;
  /** Africa's Talking USSD callback (`createUssdRoutes`), served under `/ussd`. */
  ussdRoutes?: Hono;
  /** `METRICS_TOKEN`: serves `/metrics` (Prometheus) to `Authorization: Bearer <token>`; unset: 404. */
  metricsToken?: string;
  /** Ages in `/metrics` (oldest pending provisioning command) are measured on it; default the system's. */
  clock?: Clock;
}

/** The HTTP surface. Channel adapters mount their routes here; each route is thin. */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  const metrics = deps.metricsToken
    ? createMetrics({ db: deps.db, logger: deps.logger, clock: deps.clock })
    : undefined;
  // First, so that it sees every route, including those mounted after createApp returns.
  app.use("*", requestLog(deps.logger, metrics));
  app.get("/healthz", async (c) => {
    try {
      await ping(deps.db);
      return c.json({ status: "ok", database: "ok", mode: deps.mode ?? "sandbox" });
    } catch (error) {
      deps.logger.error({ err: error }, "health check failed");
      return c.json({ status: "error", database: "unreachable", mode: deps.mode ?? "sandbox" }, 503);
    }
  });
  if (metrics && deps.metricsToken) app.get("/metrics", metricsHandler(metrics, deps.metricsToken));
  if (deps.mpesaRoutes) app.route("/hooks/mp", deps.mpesaRoutes);
  if (deps.ussdRoutes) app.route("/ussd", deps.ussdRoutes);
  app.onError((error, c) => {
    // The route's pattern, not the path: a path can carry a secret token.
    deps.logger.error({ err: error, route: c.req.routePath, requestId: requestIdOf(c) }, "unhandled error");
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}
