import { Hono } from "hono";
import { type Db, ping } from "./db/client.ts";
import type { Logger } from "./logger.ts";
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
}

/** The HTTP surface. Channel adapters mount their routes here; each route is thin. */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.get("/healthz", async (c) => {
    try {
      await ping(deps.db);
      return c.json({ status: "ok", database: "ok", mode: deps.mode ?? "sandbox" });
    } catch (error) {
      deps.logger.error({ err: error }, "health check failed");
      return c.json({ status: "error", database: "unreachable", mode: deps.mode ?? "sandbox" }, 503);
    }
  });
  if (deps.mpesaRoutes) app.route("/hooks/mp", deps.mpesaRoutes);
  if (deps.ussdRoutes) app.route("/ussd", deps.ussdRoutes);
  app.onError((error, c) => {
    // The route's pattern, not the path: a path can carry a secret token.
    deps.logger.error({ err: error, route: c.req.routePath }, "unhandled error");
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}
