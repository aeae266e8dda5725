import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../src/billing/context.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { FakeClock } from "../src/clock.ts";
import { billingSettingsFrom, type Config, loadConfig } from "../src/config.ts";
import { mpesaCallbacks, paymentIntents } from "../src/db/schema/index.ts";
import { createSecretBox, parseSecretKey } from "../src/lib/secret-box.ts";
import { addRouter } from "../src/network/routers.ts";
import { callbackPaths } from "../src/payments/routes.ts";
import { workerRoutes } from "../src/worker/routes.ts";
import { admin, createPlan, uniquePhone } from "./support/billing.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { silent } from "./ussd/world.ts";

/**
 * The Worker's routes built in this process, as src/worker/index.ts builds them for each request
 * (test/worker.test.ts runs the built bundle under wrangler, on PostgreSQL only): a payment asked
 * through them is held to the configured STK limits, as on the Node service.
 */

let database: TestDatabase;
let config: Config;
let billing: BillingContext;
const clock = new FakeClock("2026-06-01T06:00:00Z");
const SECRET_KEY = "07".repeat(32);

beforeAll(async () => {
  database = await createTestDatabase();
  // One prompt per phone (and per session) in 5 minutes, where the default allows three; two per
  // hotspot and client address.
  config = loadConfig({ STK_LIMIT_COUNT: "1", STK_LIMIT_PER_SOURCE: "2", SECRET_KEY });
  billing = { db: database.db, clock, settings: billingSettingsFrom(config) };
});
afterAll(async () => {
  await database?.close();
});

/** One request through the routes the Worker builds for its path. */
async function send(path: string, init: RequestInit, settings: Config = config): Promise<Response> {
  const { app, settled } = workerRoutes(
    { config: settings, logger: silent, billing, secretKey: parseSecretKey(SECRET_KEY) },
    path,
  );
  const response = await app.request(path, init);
  await settled();
  return response;
}

const intentsOf = (phone: string) =>
  database.db.select().from(paymentIntents).where(eq(paymentIntents.phone, phone));

describe("the Worker's payments under STK_LIMIT_COUNT=1", () => {
  it("refuses a second USSD prompt for the same phone within the window", async () => {
    const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
    const { customer } = await createCustomerWithSubscription(billing, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const dial = (session: string, text: string) =>
      send("/ussd", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          sessionId: session,
          serviceCode: "*384*1#",
          phoneNumber: customer.phone,
          text,
        }),
      }).then((r) => r.text());

    expect(await dial("ATUid_limit_1", "2")).toMatch(/^CON .*KES 1,500/s);
    expect(await dial("ATUid_limit_1", "2*1")).toMatch(/^END .*M-Pesa PIN/s);
    expect(await dial("ATUid_limit_2", "2")).toMatch(/^CON .*KES 1,500/s);
    expect(await dial("ATUid_limit_2", "2*1")).toBe(
      "END Too many payment requests. Please wait a few minutes and try again.",
    );
    expect(await intentsOf(customer.phone)).toHaveLength(1);
  });

  it("refuses a second portal purchase from the same phone within the window", async () => {
    const name = "worker-limit-hs";
    await addRouter(database.db, createSecretBox(Buffer.alloc(32, 7)), {
      name,
      host: "127.0.0.1",
      port: 1,
      username: "tandao",
      password: "pw",
    });
    const plan = await createPlan(database.db, {
      name: "Worker Hour",
      kind: "hotspot",
      priceCents: 2_000,
      periodUnit: "hours",
      periodCount: 1,
      rateLimit: "2M/5M",
    });
    const phone = uniquePhone();
    const buy = (key: string) =>
      send(`/portal/${name}/pay`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ phone, plan: plan.id, key }),
      });

    expect((await buy("worker-limit-first-0123456789")).status).toBe(200);
    const second = await buy("worker-limit-second-012345678");
    expect(second.status).toBe(429);
    expect(JSON.stringify(await second.json())).toMatch(/Too many payment prompts: at most 1 in 5 minutes/);
    expect(await intentsOf(phone)).toHaveLength(1);
  });

  it("counts portal purchases per hotspot and client address, read from Cloudflare's CF-Connecting-IP", async () => {
    const name = "worker-source-hs";
    await addRouter(database.db, createSecretBox(Buffer.alloc(32, 7)), {
      name,
      host: "127.0.0.1",
      port: 1,
      username: "tandao",
      password: "pw",
    });
    const plan = await createPlan(database.db, {
      name: "Worker Source Hour",
      kind: "hotspot",
      priceCents: 2_000,
      periodUnit: "hours",
      periodCount: 1,
      rateLimit: "2M/5M",
    });
    let seq = 0;
    const buy = (address: string) =>
      send(`/portal/${name}/pay`, {
        method: "POST",
        headers: { "content-type": "application/json", "cf-connecting-ip": address },
        body: JSON.stringify({
          phone: uniquePhone(),
          plan: plan.id,
          key: `worker-source-key-${++seq}-0123456789`,
        }),
      });
    expect((await buy("198.51.100.7")).status).toBe(200);
    expect((await buy("198.51.100.7")).status).toBe(200);
    const third = await buy("198.51.100.7");
    expect(third.status).toBe(429);
    expect(JSON.stringify(await third.json())).toMatch(
      /Too many payment prompts from this connection: at most 2/,
    );
    // Another site, at another address, is not held up by it.
    expect((await buy("203.0.113.20")).status).toBe(200);
  });
});

describe("the Worker's address allowlists, read from Cloudflare's CF-Connecting-IP", () => {
  const gateway = "41.1.1.1";
  const safaricom = "196.201.214.200";
  const mpesaToken = "worker-allowlist-callback-token";
  const allowlisted = () =>
    loadConfig({
      SECRET_KEY,
      USSD_ALLOWED_IPS: gateway,
      MPESA_ALLOWED_IPS: safaricom,
      MPESA_CALLBACK_TOKEN: mpesaToken,
    });

  it("serves USSD_ALLOWED_IPS' gateway and refuses any other caller, whatever it writes in X-Forwarded-For", async () => {
    const settings = allowlisted();
    let seq = 0;
    const dial = (headers: Record<string, string>) =>
      send(
        "/ussd",
        {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
          body: new URLSearchParams({
            sessionId: `ATUid_allow_${++seq}`,
            serviceCode: "*384*1#",
            phoneNumber: uniquePhone(),
            text: "",
          }),
        },
        settings,
      ).then(async (r) => ({ status: r.status, text: await r.text() }));

    const served = await dial({ "cf-connecting-ip": gateway });
    expect(served.status).toBe(200);
    expect(served.text).toMatch(/^CON /);
    const refused = { status: 404, text: "Not Found" };
    expect(await dial({ "cf-connecting-ip": "9.9.9.9" })).toEqual(refused);
    expect(await dial({ "cf-connecting-ip": "9.9.9.9", "x-forwarded-for": gateway })).toEqual(refused);
    expect(await dial({})).toEqual(refused);
  });

  it("stores Daraja's callback from MPESA_ALLOWED_IPS and refuses one from elsewhere, storing nothing", async () => {
    const settings = allowlisted();
    const checkout = "ws_CO_worker_allowlist";
    const callback = (headers: Record<string, string>) =>
      send(
        callbackPaths.stk(mpesaToken),
        {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify({
            Body: {
              stkCallback: {
                MerchantRequestID: "29115-34620561-9",
                CheckoutRequestID: checkout,
                ResultCode: 1032,
                ResultDesc: "Request cancelled by user",
              },
            },
          }),
        },
        settings,
      );
    const stored = async () =>
      (await database.db.select({ raw: mpesaCallbacks.raw }).from(mpesaCallbacks)).filter((row) =>
        row.raw?.includes(checkout),
      ).length;

    expect((await callback({ "cf-connecting-ip": "9.9.9.9", "x-forwarded-for": safaricom })).status).toBe(
      404,
    );
    expect((await callback({})).status).toBe(404);
    expect(await stored()).toBe(0);
    expect((await callback({ "cf-connecting-ip": safaricom })).status).toBe(200);
    expect(await stored()).toBe(1);
  });
});
