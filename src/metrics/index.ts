import type { Context, MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { type Clock, systemClock } from "../clock.ts";
import type { Db } from "../db/client.ts";
import { sameSecret } from "../lib/same-secret.ts";
import type { Logger } from "../logger.ts";
import { type DatabaseGauges, databaseGauges } from "./database.ts";
import { requestIdFrom, requestIdHeader } from "./request-id.ts";

export { requestIdFrom, requestIdHeader } from "./request-id.ts";

/** Methods labelled as themselves; anything else is `other` (a label must not take any value a caller sends). */
const knownMethods = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
/** Routes probed every few seconds: their successful requests are logged at debug, not info. */
const probeRoutes = new Set(["/healthz", "/metrics"]);

export interface Metrics {
  registry: Registry;
  /** Records one answered request in `http_request_duration_seconds`. */
  observeRequest(method: string, route: string, status: number, seconds: number): void;
  /** The Prometheus text exposition, the database figures read now. */
  render(): Promise<string>;
}

export interface MetricsOptions {
  db: Db;
  logger: Logger;
  clock?: Clock;
  /** How long the database may take to answer a scrape (default 2 s). */
  databaseTimeoutMs?: number;
  /** Node's process metrics (CPU, memory, event loop, GC); default on. */
  processMetrics?: boolean;
}

/** A registry of its own per app, so that several apps (tests, instances in one process) never share one. */
export function createMetrics(options: MetricsOptions): Metrics {
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const duration = new Histogram({
    name: "http_request_duration_seconds",
    help: "Time to answer an HTTP request, by method, route pattern and status class",
    labelNames: ["method", "route", "status_class"],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const database: DatabaseGauges = databaseGauges(registry, {
    db: options.db,
    clock: options.clock ?? systemClock,
    timeoutMs: options.databaseTimeoutMs ?? 2000,
  });
  return {
    registry,
    observeRequest(method, route, status, seconds) {
      duration.observe(
        {
          method: knownMethods.has(method) ? method : "other",
          route,
          status_class: `${Math.floor(status / 100)}xx`,
        },
        seconds,
      );
    },
    async render() {
      try {
        await database.refresh();
      } catch (error) {
        // The scrape still answers (with `tandao_metrics_database_up 0`): the process figures stay useful.
        options.logger.warn({ err: error }, "metrics: database figures not read");
      }
      return registry.metrics();
    },
  };
}

/**
 * Request id and access log: every request gets an id (a well-formed incoming `X-Request-Id`, else a
 * new one), sent back in the same header, and one log line when answered, naming the route's
 * pattern (never the path: a path can carry a secret token), the status and the time taken.
 */
export function requestLog(logger: Logger, metrics?: Metrics): MiddlewareHandler {
  return async (c, next) => {
    const started = performance.now();
    const requestId = requestIdFrom(c.req.header(requestIdHeader));
    requestIds.set(c.req.raw, requestId);
    const own = c.req.routeIndex;
    // Set before the answer is made, so it is made with it: set after, hono rebuilds the finished
    // answer around its body as a stream (the answer to every webhook call paid for that).
    c.header(requestIdHeader, requestId);
    await next();
    // A handler that returned a Response of its own made it without the id.
    if (!c.res.headers.has(requestIdHeader)) c.header(requestIdHeader, requestId);
    const seconds = (performance.now() - started) / 1000;
    // The pattern of the handler that answered; none matched (only middleware ran): `unmatched`.
    const route = c.req.routeIndex === own ? "unmatched" : routePath(c) || "unmatched";
    const status = c.res.status;
    metrics?.observeRequest(c.req.method, route, status, seconds);
    const line = { requestId, method: c.req.method, route, status, ms: Math.round(seconds * 10_000) / 10 };
    if (probeRoutes.has(route) && status < 400) logger.debug(line, "request");
    else logger.info(line, "request");
  };
}

const requestIds = new WeakMap<Request, string>();

/** The id `requestLog` gave this request (for other log lines about it). */
export function requestIdOf(c: Context): string | undefined {
  return requestIds.get(c.req.raw);
}

/**
 * `GET /metrics`: Prometheus text for a caller presenting `Authorization: Bearer <token>`,
 * compared in constant time.
 */
export function metricsHandler(metrics: Metrics, token: string) {
  return async (c: Context) => {
    const presented = /^Bearer +(\S+)\s*$/i.exec(c.req.header("Authorization") ?? "")?.[1];
    if (!sameSecret(presented, token)) {
      c.header("WWW-Authenticate", 'Bearer realm="metrics"');
      return c.text("Unauthorized", 401);
    }
    const body = await metrics.render();
    return c.body(body, 200, { "Content-Type": metrics.registry.contentType });
  };
}
