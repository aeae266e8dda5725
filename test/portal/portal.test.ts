import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createVoucherBatch, markVouchersSold } from "../../src/billing/vouchers.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { paymentIntents, vouchers } from "../../src/db/schema/index.ts";
import type { RouterApi, RouterRow } from "../../src/network/connection.ts";
import {
  contrast,
  ensureWalledGarden,
  parseHex,
  safeLoginUrl,
  themeFrom,
  themePairs,
  walledGardenEntries,
} from "../../src/portal/index.ts";
import { createTokenSigner } from "../../src/portal/token.ts";
import { freshPhone, intent, startHarness } from "../payments/harness.ts";
import { admin, billingContext, count, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { hotspotPlans, pageKey, portalApp, postJson, routerRow, TOKEN_KEY } from "./world.ts";

let database: Database;
let plans: Awaited<ReturnType<typeof hotspotPlans>>;
beforeAll(async () => {
  database = await createTestDatabase();
  plans = await hotspotPlans(database.db);
});
afterAll(async () => {
  await database.close();
});

const intentsFor = (phone: string) =>
  count(database.db, sql`select count(*) as n from payment_intents where phone = ${phone}`);

describe("the portal page", () => {
  it("lists the hotspot plans on sale with price, speed, validity and data cap, and keeps the hotspot's variables", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    const res = await app.request(
      `/portal/${router.name}?link-login-only=${encodeURIComponent("http://10.5.50.1/login")}&dst=${encodeURIComponent("http://example.com/")}&mac=AA%3ABB%3ACC%3A00%3A11%3A22&ip=10.5.50.9`,
    );
    expect(res.status).toBe(200);
    const page = await res.text();
    expect(page).toContain('<html lang="en">');
    expect(page).toContain("1 Hour");
    expect(page).toContain("KES 20");
    expect(page).toContain("Speed: 5 Mbps down, 2 Mbps up");
    expect(page).toContain("Valid for 1 hour");
    expect(page).toContain("Day Pass");
    expect(page).toContain("KES 50");
    expect(page).toContain("Data: 2 GB");
    expect(page).toContain("Data: unlimited");
    expect(page).not.toContain("Old Promo");
    expect(page).not.toContain("Home Fibre");
    expect(page).toContain('<label class="field" for="phone">M-Pesa phone number</label>');
    expect(page).toContain('name="link-login-only" value="http://10.5.50.1/login"');
    expect(page).toContain('name="mac" value="AA:BB:CC:00:11:22"');
    expect(page).toContain('<a id="login" class="button" href="http://10.5.50.1/login" hidden>');
    // The language switch keeps the hotspot's variables.
    expect(page).toMatch(
      /<a href="\/portal\/[^"]+\?link-login-only=[^"]*lang=sw" hreflang="sw" lang="sw" id="lang">/,
    );
  });

  it("shows a price with cents as the whole shillings the M-Pesa prompt will ask", async () => {
    const promo = await createPlan(database.db, {
      name: "Promo Hour",
      kind: "hotspot",
      priceCents: 2_050,
      periodUnit: "hours",
      periodCount: 1,
      rateLimit: "2M/5M",
    });
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    const page = await (await app.request(`/portal/${router.name}`)).text();
    // The card, and the script's "pay {amount}" once the prompt is sent.
    expect(page).toContain(`value="${promo.id}" data-price="KES 21"`);
    expect(page).toContain('<span class="name">Promo Hour</span> <span class="price">KES 21</span>');
    expect(page).not.toContain("KES 20.50");
    const res = await app.request(`/portal/${router.name}/pay`, {
      method: "POST",
      body: new URLSearchParams({ plan: String(promo.id), phone: freshPhone(), key: pageKey(), lang: "en" }),
    });
    const token = new URL(res.headers.get("location")!, "http://portal").searchParams.get("t")!;
    expect(Number((await intent(database.db, Number.parseInt(token.split(".")[0]!, 36))).amountCents)).toBe(
      2_100,
    );
    const waiting = await (await app.request(res.headers.get("location")!)).text();
    expect(waiting).toContain("Enter your M-Pesa PIN on the prompt to pay KES 21.");
  });

  it("speaks Kiswahili with ?lang=sw", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const page = await (await portalApp(ctx).request(`/portal/${router.name}?lang=sw`)).text();
    expect(page).toContain('<html lang="sw">');
    expect(page).toContain("Lipa kwa M-Pesa");
    expect(page).toContain("Siku Nzima");
    expect(page).toContain("Muda: siku 1");
    expect(page).toContain("Nambari ya simu ya M-Pesa");
  });

  it("answers 404 for a router it does not know or a name no router can have, and escapes what the hotspot sends", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    expect((await app.request("/portal/no-such-router")).status).toBe(404);
    // A control character in the name (a NUL would make PostgreSQL refuse the query) on every route.
    expect((await app.request("/portal/%00")).status).toBe(404);
    expect((await app.request(`/portal/${router.name}%0A`)).status).toBe(404);
    expect((await app.request("/portal/a%00b/login.html")).status).toBe(404);
    expect((await app.request("/portal/%00/status/1.AAAAAAAAAAAAAAAAAAAAAAAA")).status).toBe(404);
    expect((await postJson(app, "/portal/%00/voucher", { code: "ABCDEFGH" })).status).toBe(404);
    expect((await postJson(app, "/portal/%00/pay", { plan: 1, phone: "0712345678" })).status).toBe(404);
    const page = await (
      await app.request(`/portal/${router.name}?error=${encodeURIComponent("<script>x</script>")}`)
    ).text();
    expect(page).not.toContain("<script>x</script>");
    expect(page).toContain("&lt;script&gt;x&lt;/script&gt;");
  });

  it("sends credentials only to a hotspot login URL", () => {
    expect(safeLoginUrl("http://10.5.50.1/login")).toBe("http://10.5.50.1/login");
    expect(safeLoginUrl("http://192.168.88.1/login")).toBe("http://192.168.88.1/login");
    expect(safeLoginUrl("http://172.31.0.1/login")).toBe("http://172.31.0.1/login");
    expect(safeLoginUrl("http://100.64.1.1/login")).toBe("http://100.64.1.1/login");
    // Another spelling of a private address is read as the address.
    expect(safeLoginUrl("http://0x0a050001/login")).toBe("http://10.5.0.1/login");
    // A name only when the ISP lists it (HOTSPOT_LOGIN_HOSTS): anyone can register a public one.
    expect(safeLoginUrl("https://hotspot.example.net/login")).toBeNull();
    expect(safeLoginUrl("https://Hotspot.Example.net/login", ["hotspot.example.NET"])).toBe(
      "https://hotspot.example.net/login",
    );
    expect(safeLoginUrl("http://hotspot.example.net.evil.example/login", ["hotspot.example.net"])).toBeNull();
    expect(safeLoginUrl("http://8.8.8.8/login")).toBeNull();
    expect(safeLoginUrl("http://172.32.0.1/login")).toBeNull();
    expect(safeLoginUrl("http://11.0.0.1/login")).toBeNull();
    expect(safeLoginUrl("javascript:alert(1)")).toBeNull();
    expect(safeLoginUrl("http://evil.example/steal")).toBeNull();
    expect(safeLoginUrl("http://evil.example/login")).toBeNull();
    expect(safeLoginUrl("http://user:pw@10.5.50.1/login")).toBeNull();
  });

  it("keeps every text/background pair readable whatever colour the ISP picks", () => {
    for (const colour of ["#0a7d4f", "#ffeb3b", "#ffffff", "#000000", "#e91e63", "not a colour"]) {
      for (const [what, fg, bg] of themePairs(themeFrom(colour))) {
        expect(contrast(parseHex(fg)!, parseHex(bg)!), `${colour}: ${what}`).toBeGreaterThanOrEqual(4.5);
      }
    }
  });
});

describe("buying a package", () => {
  it("refuses a number from a country that is not served, with a clear message, and records nothing", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    const res = await postJson(app, `/portal/${router.name}/pay`, {
      plan: plans.hour.id,
      phone: "+447912345678",
      key: pageKey(),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: "Sorry, Tandao Net does not serve phone numbers from United Kingdom.",
    });
    expect(await intentsFor("+447912345678")).toBe(0);
    const sw = await postJson(app, `/portal/${router.name}/pay`, {
      plan: plans.hour.id,
      phone: "+256712345678",
      key: pageKey(),
      lang: "sw",
    });
    expect(((await sw.json()) as { error: string }).error).toMatch(
      /^Samahani, Tandao Net haihudumii nambari za simu za /,
    );
  });

  it("refuses a number that is not one, a plan that is not a hotspot plan on sale, and a missing key", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    const phone = freshPhone();
    const bad = async (body: Record<string, unknown>) => {
      const res = await postJson(app, `/portal/${router.name}/pay`, body);
      expect(res.status).toBe(400);
      return ((await res.json()) as { error: string }).error;
    };
    expect(await bad({ plan: plans.hour.id, phone: "12", key: pageKey() })).toMatch(
      /Enter an M-Pesa phone number/,
    );
    expect(await bad({ plan: plans.home.id, phone, key: pageKey() })).toBe("That package is not on sale.");
    expect(await bad({ plan: plans.retired.id, phone, key: pageKey() })).toBe("That package is not on sale.");
    expect(await bad({ plan: "x", phone, key: pageKey() })).toBe("That package is not on sale.");
    expect(await bad({ plan: 3_000_000_000, phone, key: pageKey() })).toBe("That package is not on sale.");
    expect(await bad({ plan: plans.hour.id, phone, key: "short" })).toMatch(/Something went wrong/);
    expect(await intentsFor(phone)).toBe(0);
  });

  it("makes one prompt for a double click (same page key), answering the same intent and token", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    const phone = freshPhone();
    const key = pageKey();
    const body = { plan: plans.day.id, phone: phone.replace("+254", "0"), key, mac: "AA:BB:CC:00:11:22" };
    const [one, two] = await Promise.all([
      postJson(app, `/portal/${router.name}/pay`, body),
      postJson(app, `/portal/${router.name}/pay`, body),
    ]);
    expect(one.status).toBe(200);
    expect(two.status).toBe(200);
    const a = (await one.json()) as { intentId: number; token: string };
    const b = (await two.json()) as { intentId: number; token: string };
    expect(a).toEqual(b);
    expect(await intentsFor(phone)).toBe(1);
    const row = await intent(database.db, a.intentId);
    expect(row).toMatchObject({
      purpose: "voucher",
      channel: "portal",
      amountCents: 5_000,
      planId: plans.day.id,
      phone,
      channelSessionId: `${router.id}:AA:BB:CC:00:11:22`,
    });
  });

  it("refuses a second purchase within the limit window, and records nothing for it", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx, { limits: { promptsPerWindow: 1, windowMs: 5 * 60_000 } });
    const phone = freshPhone();
    const first = await postJson(app, `/portal/${router.name}/pay`, {
      plan: plans.hour.id,
      phone,
      key: pageKey(),
    });
    expect(first.status).toBe(200);
    const second = await postJson(app, `/portal/${router.name}/pay`, {
      plan: plans.hour.id,
      phone,
      key: pageKey(),
    });
    expect(second.status).toBe(429);
    expect(((await second.json()) as { error: string }).error).toBe(
      "Too many payment prompts: at most 1 in 5 minutes. Please wait and try again.",
    );
    expect(await intentsFor(phone)).toBe(1);
  });

  it("limits the prompts one hotspot's address sends, even when a device leaves out or changes its MAC", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const nextSite = await routerRow(database.db);
    const app = portalApp(ctx, { limits: { promptsPerWindow: 3, perSource: 5 } });
    const buy = (site: { name: string }, mac?: string) =>
      postJson(app, `/portal/${site.name}/pay`, {
        plan: plans.hour.id,
        phone: freshPhone(),
        key: pageKey(),
        ...(mac ? { mac } : {}),
      });
    const statuses: number[] = [];
    let refusal = "";
    for (let i = 0; i < 8; i++) {
      const res = await buy(router, i % 2 === 0 ? undefined : `02:00:00:00:00:${(10 + i).toString(16)}`);
      statuses.push(res.status);
      if (res.status === 429) refusal = ((await res.json()) as { error: string }).error;
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    expect(refusal).toBe(
      "Too many payment prompts from this connection: at most 5 in 5 minutes. Please wait and try again.",
    );
    // Another hotspot's buyers are not held up by it.
    expect((await buy(nextSite)).status).toBe(200);
  });

  it("works as a plain form post too: a redirect to the page that follows the payment", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    const phone = freshPhone();
    const form = new URLSearchParams({
      plan: String(plans.hour.id),
      phone,
      key: pageKey(),
      lang: "en",
      "link-login-only": "http://10.5.50.1/login",
      dst: "http://example.com/",
    });
    const res = await app.request(`/portal/${router.name}/pay`, { method: "POST", body: form });
    expect(res.status).toBe(303);
    const location = res.headers.get("location")!;
    expect(location).toMatch(/link-login-only=http%3A%2F%2F10\.5\.50\.1%2Flogin/);
    expect(location).toMatch(/[?&]t=/);
    const page = await (await app.request(location)).text();
    expect(page).toContain("Enter your M-Pesa PIN on the prompt to pay KES 20.");
    expect(page).toContain('<meta http-equiv="refresh" content="5">');
    // A refused form post shows the page again with the reason and what was typed.
    const refused = await app.request(`/portal/${router.name}/pay`, {
      method: "POST",
      body: new URLSearchParams({ plan: String(plans.hour.id), phone: "+447912345678", key: pageKey() }),
    });
    expect(refused.status).toBe(400);
    const again = await refused.text();
    expect(again).toContain("does not serve phone numbers from United Kingdom");
    expect(again).toContain('value="+447912345678"');
  });
  it("does not greet a new purchase with the hotspot's refusal of an earlier login", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    const hotspot = new URLSearchParams({
      "link-login-only": "http://10.5.50.1/login",
      dst: "http://example.com/",
      error: "user 7KQ2MZ4P has reached uptime limit",
    });
    const first = await (await app.request(`/portal/${router.name}?${hotspot}`)).text();
    const alert = '<p class="error" role="alert">The hotspot said:';
    expect(first).toContain(`${alert} user 7KQ2MZ4P has reached uptime limit`);
    // The same page in Kiswahili still says it; what the person does next does not carry it.
    expect(first).toMatch(/<a href="[^"]*error=user[^"]*lang=sw" [^>]*id="lang">/);
    expect(first).not.toMatch(/<form [^>]*action="[^"]*error=/);
    // The buy form sent as the browser would: its action, its fields.
    const action = /<form id="buy" method="post" action="([^"]+)"/.exec(first)![1]!.replace(/&amp;/g, "&");
    const res = await app.request(action, {
      method: "POST",
      body: new URLSearchParams({
        plan: String(plans.day.id),
        phone: freshPhone(),
        key: pageKey(),
        lang: "en",
        "link-login-only": "http://10.5.50.1/login",
        dst: "http://example.com/",
      }),
    });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).not.toContain("error=");
    const waiting = await (await app.request(res.headers.get("location")!)).text();
    expect(waiting).toContain("Enter your M-Pesa PIN on the prompt to pay KES 50.");
    expect(waiting).not.toContain(alert);
  });
});

describe("following the payment", () => {
  it("goes pending → paid with the voucher the settlement made, through the Daraja fake", async () => {
    const { ctx } = billingContext(database.db, new FakeClock(new Date()));
    const h = await startHarness(ctx);
    try {
      const router = await routerRow(database.db);
      const app = portalApp(ctx);
      const phone = freshPhone();
      const { token, intentId } = (await (
        await postJson(app, `/portal/${router.name}/pay`, { plan: plans.hour.id, phone, key: pageKey() })
      ).json()) as { token: string; intentId: number };
      const status = async (lang = "en") =>
        (await app.request(`/portal/${router.name}/status/${token}?lang=${lang}`)).json() as Promise<
          Record<string, unknown>
        >;
      expect(await status()).toEqual({ state: "pending", message: "Waiting for your M-Pesa payment." });
      h.fake.queue({ outcome: "success", delayMs: 10 });
      await h.dispatcher.runOnce();
      await h.fake.idle();
      const [voucher] = await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone));
      expect(voucher).toBeDefined();
      expect(await status()).toEqual({
        state: "paid",
        message: `Payment received. Your code is ${voucher!.code}.`,
        voucher: { username: voucher!.code, password: voucher!.code },
        ready: false,
      });
      expect((await status("sw")).message).toBe(`Malipo yamepokelewa. Msimbo wako ni ${voucher!.code}.`);
      expect((await intent(database.db, intentId)).status).toBe("succeeded");
      // Once the provisioning worker has put the user on the router, the page may log in at once.
      await database.db.execute(
        sql`update provisioning_outbox set status = 'done' where voucher_id = ${voucher!.id}`,
      );
      expect((await status()).ready).toBe(true);
    } finally {
      await h.close();
    }
  });

  it("says so when the payer cancels, the payment fails, or M-Pesa never answers", async () => {
    const { ctx } = billingContext(database.db, new FakeClock(new Date()));
    const h = await startHarness(ctx);
    try {
      const router = await routerRow(database.db);
      const app = portalApp(ctx);
      const outcomes = [
        ["cancelled", "failed", "You cancelled the M-Pesa prompt. Nothing was paid."],
        ["insufficient_funds", "failed", /^The payment did not go through/],
        ["unreachable", "timed_out", /^M-Pesa did not confirm the payment in time/],
      ] as const;
      for (const [outcome, state, message] of outcomes) {
        const phone = freshPhone();
        const { token } = (await (
          await postJson(app, `/portal/${router.name}/pay`, { plan: plans.hour.id, phone, key: pageKey() })
        ).json()) as { token: string };
        h.fake.queue({ outcome, delayMs: 10 });
        await h.dispatcher.runOnce();
        await h.fake.idle();
        const answer = (await (await app.request(`/portal/${router.name}/status/${token}`)).json()) as {
          state: string;
          message: string;
          voucher?: unknown;
        };
        expect(answer.state, outcome).toBe(state);
        expect(answer.message).toMatch(message);
        expect(answer.voucher).toBeUndefined();
        expect(
          await count(database.db, sql`select count(*) as n from vouchers where sold_to_phone = ${phone}`),
        ).toBe(0);
      }
    } finally {
      await h.close();
    }
  });

  it("without JavaScript, 'Try again' after a cancelled payment leads back to the buy form", async () => {
    const { ctx } = billingContext(database.db, new FakeClock(new Date()));
    const h = await startHarness(ctx);
    try {
      const router = await routerRow(database.db);
      const app = portalApp(ctx);
      const res = await app.request(`/portal/${router.name}/pay`, {
        method: "POST",
        body: new URLSearchParams({
          plan: String(plans.hour.id),
          phone: freshPhone(),
          key: pageKey(),
          lang: "en",
          "link-login-only": "http://10.5.50.1/login",
        }),
      });
      h.fake.queue({ outcome: "cancelled", delayMs: 10 });
      await h.dispatcher.runOnce();
      await h.fake.idle();
      const ended = await (await app.request(res.headers.get("location")!)).text();
      expect(ended).toContain("You cancelled the M-Pesa prompt. Nothing was paid.");
      expect(ended).toMatch(/<form id="buy"[^>]* hidden>/);
      const retry = /<a id="again" class="button" href="([^"]+)">Try again<\/a>/.exec(ended)?.[1];
      expect(retry).toBeDefined();
      const again = await (await app.request(retry!.replace(/&amp;/g, "&"))).text();
      expect(again).toMatch(/<form id="buy" method="post" action="[^"]+">/);
      expect(again).toContain('<p class="error" id="result" role="alert" hidden></p>');
      expect(again).toContain('name="link-login-only" value="http://10.5.50.1/login"');
    } finally {
      await h.close();
    }
  });

  it("keeps the payment when the buyer switches language while waiting or once paid", async () => {
    const { ctx } = billingContext(database.db, new FakeClock(new Date()));
    const h = await startHarness(ctx);
    try {
      const router = await routerRow(database.db);
      const app = portalApp(ctx);
      const phone = freshPhone();
      const res = await app.request(`/portal/${router.name}/pay`, {
        method: "POST",
        body: new URLSearchParams({
          plan: String(plans.hour.id),
          phone,
          key: pageKey(),
          lang: "en",
          "link-login-only": "http://10.5.50.1/login",
          dst: "http://example.com/",
        }),
      });
      expect(res.status).toBe(303);
      const location = res.headers.get("location")!;
      const languageLink = async (path: string) => {
        const page = await (await app.request(path)).text();
        return /<a href="([^"]+)" hreflang="sw" lang="sw" id="lang">/.exec(page)![1]!.replace(/&amp;/g, "&");
      };
      const waitingSw = await (await app.request(await languageLink(location))).text();
      expect(waitingSw).toContain('<html lang="sw">');
      expect(waitingSw).toContain("Weka PIN yako ya M-Pesa kulipa KES 20.");

      h.fake.queue({ outcome: "success", delayMs: 10 });
      await h.dispatcher.runOnce();
      await h.fake.idle();
      const [voucher] = await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone));
      const paidSw = await (await app.request(await languageLink(location))).text();
      expect(paidSw).toContain("Umelipa: unaunganishwa");
      expect(paidSw).toContain(`<span class="code" id="code">${voucher!.code}</span>`);
    } finally {
      await h.close();
    }
  });

  it("answers 404 for a wrong token, another router's token, and another channel's intent", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const other = await routerRow(database.db);
    const app = portalApp(ctx);
    const { token, intentId } = (await (
      await postJson(app, `/portal/${router.name}/pay`, {
        plan: plans.hour.id,
        phone: freshPhone(),
        key: pageKey(),
      })
    ).json()) as { token: string; intentId: number };
    const status = async (path: string) => (await app.request(path)).status;
    expect(await status(`/portal/${router.name}/status/${token}`)).toBe(200);
    expect(await status(`/portal/${other.name}/status/${token}`)).toBe(404);
    expect(await status(`/portal/${router.name}/status/${intentId}`)).toBe(404);
    const tampered = token.replace(/^[0-9a-z]+/, (intentId + 1).toString(36));
    expect(await status(`/portal/${router.name}/status/${tampered}`)).toBe(404);
    expect(await status(`/portal/${router.name}/status/x`)).toBe(404);
    // A USSD intent is not the portal's to show, even with a correctly signed token.
    const [ussd] = await database.db
      .insert(paymentIntents)
      .values({
        phone: freshPhone(),
        purpose: "voucher",
        amountCents: 2_000,
        planId: plans.hour.id,
        channel: "ussd",
        updatedAt: new Date(),
      })
      .returning();
    const signed = createTokenSigner(TOKEN_KEY).sign(router.id, ussd!.id);
    expect(await status(`/portal/${router.name}/status/${signed}`)).toBe(404);
  });
});

describe("the voucher box", () => {
  it("logs in a live printed code for this router, and refuses unknown, unsold, other routers' and expired codes", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock(new Date()));
    const router = await routerRow(database.db);
    const other = await routerRow(database.db);
    const app = portalApp(ctx);
    const mine = await createVoucherBatch(ctx, admin, {
      planId: plans.hour.id,
      quantity: 3,
      routerId: router.id,
    });
    const anyRouter = await createVoucherBatch(ctx, admin, { planId: plans.hour.id, quantity: 1 });
    const theirs = await createVoucherBatch(ctx, admin, {
      planId: plans.hour.id,
      quantity: 1,
      routerId: other.id,
    });
    const [live, unsold, stale] = mine.codes as [string, string, string];
    await markVouchersSold(ctx, admin, { codes: [live, stale, anyRouter.codes[0]!, theirs.codes[0]!] });
    await database.db
      .update(vouchers)
      .set({ expiresAt: new Date(clock.now().getTime() - 1000) })
      .where(eq(vouchers.code, stale));
    const tryCode = async (code: string, lang = "en") => {
      const res = await postJson(app, `/portal/${router.name}/voucher`, { code, lang });
      return { status: res.status, body: (await res.json()) as Record<string, string> };
    };
    const typed = `${live.slice(0, 4).toLowerCase()}-${live.slice(4)}`;
    expect(await tryCode(typed)).toEqual({ status: 200, body: { username: live, password: live } });
    expect((await tryCode(anyRouter.codes[0]!)).status).toBe(200);
    expect(await tryCode("ZZZZZZZZ")).toEqual({
      status: 404,
      body: { error: "That code is not valid. Check it and try again." },
    });
    expect((await tryCode(unsold)).body.error).toBe(
      "That code has not been activated yet. Ask the seller to activate it.",
    );
    expect((await tryCode(theirs.codes[0]!)).body.error).toBe("That code is for another hotspot.");
    expect((await tryCode(stale)).body.error).toBe("That code has expired.");
    expect((await tryCode(stale, "sw")).body.error).toBe("Msimbo huo umeisha muda wake.");
    expect((await tryCode("  ")).body.error).toBe("Type the code printed on your voucher.");
    // Nothing was changed by looking.
    const [row] = await database.db
      .select()
      .from(vouchers)
      .where(and(eq(vouchers.code, unsold)));
    expect(row!.status).toBe("available");
  });

  it("without JavaScript, connects a printed code by a link to the hotspot's login address, not a form", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    const batch = await createVoucherBatch(ctx, admin, {
      planId: plans.hour.id,
      quantity: 4,
      routerId: router.id,
    });
    await markVouchersSold(ctx, admin, { codes: batch.codes });
    const code = batch.codes[0]!;
    const res = await app.request(`/portal/${router.name}/voucher`, {
      method: "POST",
      body: new URLSearchParams({
        code,
        lang: "en",
        "link-login-only": "http://10.5.50.1/login",
        dst: "http://example.com/a?b=1",
      }),
    });
    expect(res.status).toBe(200);
    const page = await res.text();
    const link = /<a id="login" class="button" href="([^"]+)">Connect now<\/a>/.exec(page)?.[1];
    // A page load (GET) from the https portal to the http hotspot: no "not secure" form warning.
    expect(link?.replace(/&amp;/g, "&")).toBe(
      `http://10.5.50.1/login?username=${code}&password=${code}&dst=http%3A%2F%2Fexample.com%2Fa%3Fb%3D1`,
    );
    expect(page).not.toMatch(/<form[^>]*action="http:\/\/10\.5\.50\.1/);

    // A crafted link's script address is not passed on to the router's login page.
    const crafted = await app.request(`/portal/${router.name}/voucher`, {
      method: "POST",
      body: new URLSearchParams({
        code: batch.codes[1]!,
        lang: "en",
        "link-login-only": "http://10.5.50.1/login",
        dst: "javascript:alert(document.cookie)",
      }),
    });
    const craftedLink = /<a id="login" class="button" href="([^"]+)">Connect now<\/a>/.exec(
      await crafted.text(),
    )?.[1];
    expect(craftedLink).toBeDefined();
    expect(craftedLink).not.toContain("dst=");

    // A crafted link pointing the login at another host: the code is shown to type, never sent there.
    const elsewhere = await (
      await app.request(`/portal/${router.name}/voucher`, {
        method: "POST",
        body: new URLSearchParams({
          code: batch.codes[2]!,
          lang: "en",
          "link-login-only": "http://collector.example/login",
        }),
      })
    ).text();
    expect(elsewhere).toContain(batch.codes[2]!);
    expect(elsewhere).not.toContain("collector.example/login?");
    expect(elsewhere).toContain('"login":null');
    expect(elsewhere).not.toMatch(/id="login"/);
    expect(elsewhere).toContain("Type it as username and password on the Wi-Fi login page to connect.");
    // The same name listed by the ISP as its hotspot's login host is logged in at.
    const listed = await (
      await portalApp(ctx, { loginHosts: ["login.wifi.example"] }).request(`/portal/${router.name}/voucher`, {
        method: "POST",
        body: new URLSearchParams({
          code: batch.codes[3]!,
          lang: "en",
          "link-login-only": "http://login.wifi.example/login",
        }),
      })
    ).text();
    expect(listed).toContain(`href="http://login.wifi.example/login?username=${batch.codes[3]}`);
  });

  it("slows down guessing", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx, { voucherTriesPer5Min: 3 });
    const codes: number[] = [];
    for (let i = 0; i < 4; i++)
      codes.push((await postJson(app, `/portal/${router.name}/voucher`, { code: "ABCDEFGH" })).status);
    expect(codes).toEqual([404, 404, 404, 429]);
  });
  it("holds back one phone's guessing without locking out the other phones at the hotspot, up to a cap for the site", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx, { voucherTriesPer5Min: 3, voucherTriesPerAddressPer5Min: 8 });
    const batch = await createVoucherBatch(ctx, admin, {
      planId: plans.hour.id,
      quantity: 2,
      routerId: router.id,
    });
    await markVouchersSold(ctx, admin, { codes: batch.codes });
    // Every phone reaches the portal from the hotspot's one address; the hotspot tells them apart.
    const tryCode = async (code: string, mac: string, ip: string) =>
      (await postJson(app, `/portal/${router.name}/voucher?${new URLSearchParams({ mac, ip })}`, { code }))
        .status;
    const guesses: number[] = [];
    for (let i = 0; i < 4; i++) guesses.push(await tryCode("ZZZZZZZZ", "02:00:00:00:00:01", "10.5.50.7"));
    expect(guesses).toEqual([404, 404, 404, 429]);
    expect(await tryCode(batch.codes[0]!, "AA:BB:CC:00:11:22", "10.5.50.9")).toBe(200);
    // Claiming to be a new phone at each guess meets the site's cap (8 here), which counts them all.
    const rotating: number[] = [];
    for (let i = 0; i < 5; i++)
      rotating.push(await tryCode("ZZZZZZZZ", `02:00:00:00:01:0${i}`, `10.5.50.${100 + i}`));
    expect(rotating).toEqual([404, 404, 404, 404, 429]);
    expect(await tryCode(batch.codes[1]!, "AA:BB:CC:00:11:44", "10.5.50.10")).toBe(429);
  });
});

describe("on the router", () => {
  it("generates a login.html that sends the hotspot's variables to the portal", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const res = await portalApp(ctx).request(`/portal/${router.name}/login.html`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-disposition")).toBe('attachment; filename="login.html"');
    const page = await res.text();
    expect(page).toContain(`action="https://wifi.example.net/portal/${router.name}" method="get"`);
    for (const variable of ["$(link-login-only)", "$(link-orig)", "$(mac)", "$(ip)", "$(error)"])
      expect(page).toContain(`value="${variable}"`);
    expect(page).toContain('<html lang="en">');
  });

  it("computes the walled-garden entries for the portal host and converges a router to them", async () => {
    expect(walledGardenEntries("https://wifi.example.net/portal")).toEqual([
      {
        menu: "/ip/hotspot/walled-garden",
        values: {
          action: "allow",
          "dst-host": "wifi.example.net",
          "dst-port": "443",
          comment: "tandao:portal",
        },
      },
    ]);
    expect(walledGardenEntries("http://192.0.2.10:3000")[0]).toEqual({
      menu: "/ip/hotspot/walled-garden/ip",
      values: {
        action: "accept",
        "dst-address": "192.0.2.10",
        protocol: "tcp",
        "dst-port": "3000",
        comment: "tandao:portal",
      },
    });
    // A router's two menus, as far as this needs: print by comment, add, set, remove.
    const tables = new Map<string, RouterRow[]>();
    let next = 1;
    const commands: string[] = [];
    const api: RouterApi = {
      async run(command, params = []) {
        commands.push(command);
        const menu = command.slice(0, command.lastIndexOf("/"));
        const verb = command.slice(command.lastIndexOf("/") + 1);
        const rows = tables.get(menu) ?? [];
        tables.set(menu, rows);
        const words = Object.fromEntries(params.map((p) => p.slice(1).split(/=(.*)/s).slice(0, 2)));
        if (verb === "print") return rows.filter((r) => r.comment === words.comment);
        if (verb === "add") rows.push({ ".id": `*${next++}`, ...words });
        if (verb === "set") Object.assign(rows.find((r) => r[".id"] === words[".id"])!, words);
        if (verb === "remove") {
          const ids = new Set(String(words[".id"]).split(","));
          tables.set(
            menu,
            rows.filter((r) => !ids.has(r[".id"]!)),
          );
        }
        return [];
      },
    };
    tables.set("/ip/hotspot/walled-garden", [
      { ".id": "*99", "dst-host": "other.example", comment: "the admin's own" },
      { ".id": "*98", "dst-host": "old.example.net", comment: "tandao:portal" },
    ]);
    const entries = walledGardenEntries("https://wifi.example.net/portal");
    expect(await ensureWalledGarden(api, entries)).toEqual({ added: 1, updated: 0, removed: 1 });
    expect(tables.get("/ip/hotspot/walled-garden")!.map((r) => r["dst-host"])).toEqual([
      "other.example",
      "wifi.example.net",
    ]);
    commands.length = 0;
    expect(await ensureWalledGarden(api, entries)).toEqual({ added: 0, updated: 0, removed: 0 });
    expect(commands.every((c) => c.endsWith("/print"))).toBe(true);
  });
});
