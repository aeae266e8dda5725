import { randomBytes } from "node:crypto";
import { sql } from "drizzle-orm";
import type { Context, Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import type { BillingContext } from "../src/billing/context.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { FakeClock } from "../src/clock.ts";
import { loadConfig } from "../src/config.ts";
import { useSealingKey } from "../src/db/sealed.ts";
import { addressMatcher } from "../src/lib/address-ranges.ts";
import { addressAllowlist, clientAddress, normalizeIp } from "../src/lib/client-address.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";
import { createLogger } from "../src/logger.ts";
import { startPayments } from "../src/payments/index.ts";
import { callbackPaths } from "../src/payments/routes.ts";
import { ussdRoutesFrom } from "../src/ussd/index.ts";
import { serveApp } from "./payments/inbox-support.ts";
import { admin, billingContext, count, createPlan, uniquePhone } from "./support/billing.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

/**
 * Only trusted callers reach the USSD menu and the M-Pesa callbacks: the secret path token, the
 * source-address allowlists, and `X-Forwarded-For` believed only from a configured proxy. A refused
 * request answers 404 and changes nothing.
 */

const silent = createLogger("silent");
const ussdToken = "ussd-s3cret-path";
const gateway = "41.1.1.1";

let database: TestDatabase;
let ctx: BillingContext;
let planId: number;

beforeAll(async () => {
  // PPPoE passwords are sealed at rest with the process key (main.ts registers SECRET_KEY).
  useSealingKey(createSecretBox(randomBytes(32)));
  database = await createTestDatabase();
  ctx = billingContext(database.db, new FakeClock("2026-05-04T07:00:00Z")).ctx;
  planId = (await createPlan(database.db, { priceCents: 150_000 })).id;
});
afterAll(async () => {
  await database?.close();
});

/** The app as main.ts builds it (USSD and M-Pesa routes from the configuration), on a real port. */
interface Served {
  baseUrl: string;
  app: Hono;
  mpesaToken: string;
  close(): Promise<void>;
}

async function serveWith(env: Record<string, string>): Promise<Served> {
  const config = loadConfig(env);
  expect(config.mode).toBe("sandbox");
  const payments = await startPayments({ config, ctx, logger: silent, background: false });
  const app = createApp({
    db: database.db,
    logger: silent,
    mode: config.mode,
    ussdRoutes: ussdRoutesFrom({ config, ctx, logger: silent }),
    mpesaRoutes: payments.routes,
  });
  const server = await serveApp(app);
  return {
    baseUrl: server.baseUrl,
    app,
    mpesaToken: payments.callbackToken,
    async close() {
      await server.close();
      await payments.stop();
    },
  };
}

/** Everything a USSD or M-Pesa request could write. */
async function snapshot() {
  const tables = [
    "payment_intents",
    "channel_sessions",
    "idempotency_keys",
    "audit_log",
    "rate_limit_windows",
    "mpesa_callbacks",
    "customers",
  ];
  const counts: Record<string, number> = {};
  for (const table of tables)
    counts[table] = await count(database.db, sql.raw(`select count(*)::int as n from ${table}`));
  return counts;
}

let sessionSeq = 0;

/** A customer who owes the first period: `2*1` on the menu records a payment intent. */
async function owingCustomer() {
  const created = await createCustomerWithSubscription(ctx, admin, {
    name: "Njeri Wambui",
    phone: uniquePhone(),
    planId,
  });
  return created.customer;
}

/**
 * Two requests that each change something when accepted: an owing customer confirms paying the
 * amount due (a payment intent) and a stranger confirms Kiswahili (a channel session).
 */
async function actingRequests(
  customer: { phone: string },
  send: (form: Record<string, string>) => Promise<{ status: number; text: string }>,
) {
  const pay = await send({
    sessionId: `tc-${process.pid}-${++sessionSeq}`,
    serviceCode: "*384*1#",
    phoneNumber: customer.phone,
    text: "2*1",
  });
  const language = await send({
    sessionId: `tc-${process.pid}-${++sessionSeq}`,
    serviceCode: "*384*1#",
    phoneNumber: uniquePhone(),
    text: "3*2*1",
  });
  return [pay, language];
}

function httpPost(url: string, headers: Record<string, string> = {}) {
  return async (form: Record<string, string>) => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
      body: new URLSearchParams(form),
    });
    return { status: response.status, text: await response.text() };
  };
}

/** A request handed to the app as if it came from `peer` (the socket's remote address). */
function fromPeer(app: Hono, path: string, peer: string, headers: Record<string, string> = {}) {
  return async (form: Record<string, string>) => {
    const response = await app.request(
      path,
      {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
        body: new URLSearchParams(form).toString(),
      },
      { incoming: { socket: { remoteAddress: peer, remotePort: 40_000, remoteFamily: "IPv4" } } },
    );
    return { status: response.status, text: await response.text() };
  };
}

async function expectRefusedAndUnchanged(
  send: (form: Record<string, string>) => Promise<{ status: number; text: string }>,
) {
  const customer = await owingCustomer();
  const before = await snapshot();
  const answers = await actingRequests(customer, send);
  for (const answer of answers) expect(answer).toEqual({ status: 404, text: "Not Found" });
  expect(await snapshot()).toEqual(before);
}

async function expectAcceptedAndActing(
  send: (form: Record<string, string>) => Promise<{ status: number; text: string }>,
) {
  const customer = await owingCustomer();
  const before = await snapshot();
  const [pay, language] = await actingRequests(customer, send);
  expect(pay!.status).toBe(200);
  expect(pay!.text).toMatch(/^END Enter your M-Pesa PIN/);
  expect(language!.status).toBe(200);
  expect(language!.text).toMatch(/^CON Lugha imewekwa kuwa Kiswahili/);
  const after = await snapshot();
  expect(after.payment_intents).toBe(before.payment_intents! + 1);
  expect(after.channel_sessions).toBe(before.channel_sessions! + 1);
}

describe("USSD: the path token", () => {
  let served: Served;
  beforeAll(async () => {
    served = await serveWith({ USSD_TOKEN: ussdToken });
  });
  afterAll(async () => {
    await served?.close();
  });

  it("without the token: 404, and nothing changes", async () => {
    await expectRefusedAndUnchanged(httpPost(`${served.baseUrl}/ussd`));
  });

  it("with a wrong token (same length, or a prefix): 404, and nothing changes", async () => {
    await expectRefusedAndUnchanged(httpPost(`${served.baseUrl}/ussd/${"x".repeat(ussdToken.length)}`));
    await expectRefusedAndUnchanged(httpPost(`${served.baseUrl}/ussd/${ussdToken.slice(0, -1)}`));
  });

  it("with the token: served, and the confirmations act", async () => {
    await expectAcceptedAndActing(httpPost(`${served.baseUrl}/ussd/${ussdToken}`));
  });
});

describe("USSD: the address allowlist", () => {
  it("without TRUST_PROXY: a caller outside USSD_ALLOWED_IPS is refused, X-Forwarded-For or not", async () => {
    const served = await serveWith({ USSD_ALLOWED_IPS: gateway });
    try {
      const url = `${served.baseUrl}/ussd`;
      await expectRefusedAndUnchanged(httpPost(url));
      // Anyone can write the header; from a peer that is not a configured proxy it is not believed.
      await expectRefusedAndUnchanged(httpPost(url, { "x-forwarded-for": gateway }));
      await expectRefusedAndUnchanged(
        fromPeer(served.app, "/ussd", "9.9.9.9", { "x-forwarded-for": gateway }),
      );
      // Cloudflare's header is the Worker's to believe: on Node anyone could write it.
      await expectRefusedAndUnchanged(httpPost(url, { "cf-connecting-ip": gateway }));
      // The gateway itself, connecting directly, is served.
      await expectAcceptedAndActing(fromPeer(served.app, "/ussd", gateway));
    } finally {
      await served.close();
    }
  });

  it("with TRUST_PROXY=127.0.0.1: the proxy's X-Forwarded-For is believed, a forged left-most entry is not", async () => {
    const served = await serveWith({ USSD_ALLOWED_IPS: gateway, TRUST_PROXY: "127.0.0.1" });
    try {
      const url = `${served.baseUrl}/ussd`;
      await expectAcceptedAndActing(httpPost(url, { "x-forwarded-for": gateway }));
      // The caller wrote 41.1.1.1 itself; the proxy appended the real client address.
      await expectRefusedAndUnchanged(httpPost(url, { "x-forwarded-for": `${gateway}, 9.9.9.9` }));
      // The proxy's own address is not the gateway's.
      await expectRefusedAndUnchanged(httpPost(url));
      await expectRefusedAndUnchanged(httpPost(url, { "cf-connecting-ip": gateway }));
    } finally {
      await served.close();
    }
  });

  it("token and allowlist together: both must hold", async () => {
    const served = await serveWith({
      USSD_TOKEN: ussdToken,
      USSD_ALLOWED_IPS: gateway,
      TRUST_PROXY: "127.0.0.1",
    });
    try {
      await expectRefusedAndUnchanged(httpPost(`${served.baseUrl}/ussd/${ussdToken}`));
      await expectRefusedAndUnchanged(httpPost(`${served.baseUrl}/ussd`, { "x-forwarded-for": gateway }));
      await expectAcceptedAndActing(
        httpPost(`${served.baseUrl}/ussd/${ussdToken}`, { "x-forwarded-for": gateway }),
      );
    } finally {
      await served.close();
    }
  });
});

describe("M-Pesa callbacks: the address allowlist", () => {
  const safaricom = "196.201.214.200";
  /** A cancelled push nobody asked for: stored in the inbox when accepted, nothing else. */
  const body = JSON.stringify({
    Body: {
      stkCallback: {
        MerchantRequestID: "29115-34620561-1",
        CheckoutRequestID: "ws_CO_trusted_callers_unknown",
        ResultCode: 1032,
        ResultDesc: "Request cancelled by user",
      },
    },
  });

  async function callback(url: string, headers: Record<string, string> = {}) {
    const before = await snapshot();
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
    });
    const after = await snapshot();
    return {
      status: response.status,
      stored: after.mpesa_callbacks! - before.mpesa_callbacks!,
      before,
      after,
    };
  }

  it("without TRUST_PROXY: only a caller in MPESA_ALLOWED_IPS is heard; X-Forwarded-For does not help", async () => {
    const served = await serveWith({ MPESA_ALLOWED_IPS: safaricom });
    try {
      const url = `${served.baseUrl}${callbackPaths.stk(served.mpesaToken)}`;
      const variants: Record<string, string>[] = [
        {},
        { "x-forwarded-for": safaricom },
        { "cf-connecting-ip": safaricom },
      ];
      for (const headers of variants) {
        const refused = await callback(url, headers);
        expect(refused.status).toBe(404);
        expect(refused.after).toEqual(refused.before);
      }
      const direct = await served.app.request(
        callbackPaths.stk(served.mpesaToken),
        { method: "POST", headers: { "content-type": "application/json" }, body },
        { incoming: { socket: { remoteAddress: safaricom, remotePort: 443, remoteFamily: "IPv4" } } },
      );
      expect(direct.status).toBe(200);
    } finally {
      await served.close();
    }
  });

  it("with TRUST_PROXY=127.0.0.1: the proxy's X-Forwarded-For is believed, a forged left-most entry is not", async () => {
    const served = await serveWith({ MPESA_ALLOWED_IPS: safaricom, TRUST_PROXY: "127.0.0.1" });
    try {
      const url = `${served.baseUrl}${callbackPaths.stk(served.mpesaToken)}`;
      const allowed = await callback(url, { "x-forwarded-for": safaricom });
      expect(allowed.status).toBe(200);
      expect(allowed.stored).toBe(1);
      const forged = await callback(url, { "x-forwarded-for": `${safaricom}, 9.9.9.9` });
      expect(forged.status).toBe(404);
      expect(forged.after).toEqual(forged.before);
      const proxyItself = await callback(url);
      expect(proxyItself.status).toBe(404);
      expect(proxyItself.after).toEqual(proxyItself.before);
      // The right address with a wrong token is still a stranger.
      const wrongToken = await callback(`${served.baseUrl}${callbackPaths.stk("not-the-token")}`, {
        "x-forwarded-for": safaricom,
      });
      expect(wrongToken.status).toBe(404);
      expect(wrongToken.after).toEqual(wrongToken.before);
    } finally {
      await served.close();
    }
  });
});

describe("clientAddress", () => {
  const proxies = addressMatcher(["127.0.0.1", "10.0.0.5"]);
  const none = addressMatcher([]);

  it("is the socket's peer when there is no X-Forwarded-For", () => {
    expect(clientAddress("9.9.9.9", undefined, proxies)).toBe("9.9.9.9");
    expect(clientAddress("127.0.0.1", undefined, proxies)).toBe("127.0.0.1");
    expect(clientAddress("::ffff:9.9.9.9", undefined, proxies)).toBe("9.9.9.9");
  });

  it("ignores X-Forwarded-For from a peer that is not a trusted proxy", () => {
    expect(clientAddress("9.9.9.9", "41.1.1.1", proxies)).toBe("9.9.9.9");
    expect(clientAddress("9.9.9.9", "41.1.1.1", none)).toBe("9.9.9.9");
    expect(clientAddress("127.0.0.1", "41.1.1.1", none)).toBe("127.0.0.1");
  });

  it("believes a trusted proxy (also as an IPv4-mapped IPv6 peer)", () => {
    expect(clientAddress("127.0.0.1", "41.1.1.1", proxies)).toBe("41.1.1.1");
    expect(clientAddress("::ffff:127.0.0.1", "41.1.1.1", proxies)).toBe("41.1.1.1");
    expect(clientAddress("127.0.0.1", " ::ffff:41.1.1.1 ", proxies)).toBe("41.1.1.1");
  });

  it("takes the right-most address a trusted hop did not add: a forged left-most entry is not the client", () => {
    expect(clientAddress("127.0.0.1", "41.1.1.1, 9.9.9.9", proxies)).toBe("9.9.9.9");
    expect(clientAddress("127.0.0.1", "41.1.1.1,9.9.9.9", proxies)).toBe("9.9.9.9");
    // Two proxies in a row: past both.
    expect(clientAddress("127.0.0.1", "41.1.1.1, 10.0.0.5", proxies)).toBe("41.1.1.1");
    expect(clientAddress("127.0.0.1", "6.6.6.6, 41.1.1.1, 10.0.0.5", proxies)).toBe("41.1.1.1");
    // Empty entries are skipped, not taken for an address.
    expect(clientAddress("127.0.0.1", "41.1.1.1, ,", proxies)).toBe("41.1.1.1");
  });

  it("reads an IPv6 address however it is written, so an allowlist entry matches it", () => {
    expect(clientAddress("2001:DB8:0:0::1", undefined, proxies)).toBe("2001:db8::1");
    expect(clientAddress("::FFFF:9.9.9.9", undefined, proxies)).toBe("9.9.9.9");
    const from = (address: string) =>
      addressAllowlist(["2001:0DB8::0:1", "41.1.1.1"], () => normalizeIp(address))!;
    const request = {} as Context;
    expect(from("2001:db8::1")(request)).toBe(true);
    expect(from("2001:db8:0:0:0:0:0:1")(request)).toBe(true);
    expect(from("2001:db8::2")(request)).toBe(false);
    expect(from("::ffff:41.1.1.1")(request)).toBe(true);
    expect(from("not an address")(request)).toBe(false);
  });

  it("takes ranges as operators write them (a provider's published block, a Docker network)", () => {
    const request = {} as Context;
    const from = (address: string) =>
      addressAllowlist(["196.201.214.0/24", "2001:db8::/32", "41.1.1.1"], () => normalizeIp(address))!;
    expect(from("196.201.214.200")(request)).toBe(true);
    expect(from("::ffff:196.201.214.7")(request)).toBe(true);
    expect(from("196.201.215.1")(request)).toBe(false);
    expect(from("2001:db8:ffff::1")(request)).toBe(true);
    expect(from("2001:db9::1")(request)).toBe(false);
    expect(from("41.1.1.1")(request)).toBe(true);
    expect(from("41.1.1.2")(request)).toBe(false);
    // A proxy's network: X-Forwarded-For is believed from any of its addresses.
    expect(clientAddress("172.18.0.3", "41.1.1.1", addressMatcher(["172.18.0.0/16"]))).toBe("41.1.1.1");
  });

  it("an entry that is not an address or a range stops the start, naming the setting", () => {
    for (const [name, value] of [
      ["MPESA_ALLOWED_IPS", "safaricom.co.ke"],
      ["USSD_ALLOWED_IPS", "196.201.214.0/33"],
      ["TRUST_PROXY", "10.0.0.300"],
    ] as const)
      expect(() => loadConfig({ [name]: value })).toThrow(new RegExp(`${name}.*IP addresses or ranges`, "s"));
    expect(loadConfig({ MPESA_ALLOWED_IPS: "196.201.214.0/24, 41.90.1.5" }).MPESA_ALLOWED_IPS).toEqual([
      "196.201.214.0/24",
      "41.90.1.5",
    ]);
  });
});
