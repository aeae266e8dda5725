import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ServerType, serve } from "@hono/node-server";
import { Hono } from "hono";
import type { BillingContext } from "../../src/billing/context.ts";
import type { PaymentLimits } from "../../src/billing/intents/request.ts";
import { defaultPaymentLimits } from "../../src/billing/intents/request.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Db } from "../../src/db/client.ts";
import { addRouter } from "../../src/network/routers.ts";
import { createPortalRoutes, type PortalDeps } from "../../src/portal/index.ts";
import { box } from "../network/support.ts";
import { type Harness, silent, startHarness } from "../payments/harness.ts";
import { billingContext, createPlan } from "../support/billing.ts";

export const TOKEN_KEY = "portal-test-key-0123456789abcdef";

let seq = 0;
/** A router row (no router behind it: the portal never calls one). */
export async function routerRow(db: Db, name = `hs${++seq}-${Math.random().toString(36).slice(2, 6)}`) {
  const { id } = await addRouter(db, box, {
    name,
    host: "127.0.0.1",
    port: 1,
    username: "tandao",
    password: "pw",
  });
  return { id, name };
}

export async function hotspotPlans(db: Db) {
  const hour = await createPlan(db, {
    name: "1 Hour",
    nameSw: "Saa 1",
    kind: "hotspot",
    priceCents: 2_000,
    periodUnit: "hours",
    periodCount: 1,
    rateLimit: "2M/5M",
  });
  const day = await createPlan(db, {
    name: "Day Pass",
    nameSw: "Siku Nzima",
    kind: "hotspot",
    priceCents: 5_000,
    periodUnit: "days",
    periodCount: 1,
    rateLimit: "5M/10M",
    dataCapBytes: 2 * 1024 ** 3,
  });
  const retired = await createPlan(db, {
    name: "Old Promo",
    kind: "hotspot",
    priceCents: 1_000,
    active: false,
  });
  const home = await createPlan(db, { name: "Home Fibre", kind: "pppoe", priceCents: 250_000 });
  return { hour, day, retired, home };
}

/** The portal mounted as main.ts would mount it. */
export function portalApp(
  ctx: BillingContext,
  { limits, ...options }: Partial<Omit<PortalDeps, "limits">> & { limits?: Partial<PaymentLimits> } = {},
): Hono {
  const app = new Hono();
  app.route(
    "/portal",
    createPortalRoutes({
      ctx,
      logger: silent,
      ispName: "Tandao Net",
      supportPhone: "0700000000",
      brandColour: "#0a7d4f",
      servedCountries: ["KE"],
      tokenKey: TOKEN_KEY,
      publicUrl: "https://wifi.example.net",
      limits: { ...defaultPaymentLimits, ...limits },
      pollMs: 300,
      ...options,
    }),
  );
  return app;
}

/**
 * A portal on a router of its own, taking payments through the Daraja fake (a harness stopped once
 * `test` ends), on a fake clock at the present time.
 */
export async function withPayingPortal(
  db: Db,
  test: (portal: { h: Harness; router: { id: number; name: string }; app: Hono }) => Promise<void>,
): Promise<void> {
  const { ctx } = billingContext(db, new FakeClock(new Date()));
  const h = await startHarness(ctx);
  try {
    await test({ h, router: await routerRow(db), app: portalApp(ctx) });
  } finally {
    await h.close();
  }
}

export async function listen(app: Hono): Promise<{ url: string; close(): Promise<void> }> {
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * The app over HTTPS, as the portal is served in production, with a certificate for `hostname` made
 * by openssl for this run (a browser told to ignore certificate errors accepts it).
 */
export async function listenHttps(
  app: Hono,
  hostname: string,
): Promise<{ port: number; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "portal-tls-"));
  const [key, cert] = [join(dir, "key.pem"), join(dir, "cert.pem")];
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "2",
    ].concat([
      "-subj",
      `/CN=${hostname}`,
      "-addext",
      `subjectAltName=DNS:${hostname}`,
      "-keyout",
      key,
      "-out",
      cert,
    ]),
    { stdio: "ignore" },
  );
  const serverOptions = { key: readFileSync(key), cert: readFileSync(cert) };
  rmSync(dir, { recursive: true, force: true });
  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1", createServer, serverOptions }, () =>
      resolve(s),
    );
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export function postJson(app: Hono, path: string, body: unknown) {
  return app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(body),
  });
}

let keySeq = 0;
export const pageKey = () =>
  `k${Date.now().toString(36)}${(++keySeq).toString(36)}${Math.random().toString(36).slice(2, 10)}`;
