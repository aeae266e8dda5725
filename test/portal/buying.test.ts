import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../../src/db/client.ts";
import { freshPhone, intent } from "../payments/harness.ts";
import { billingContext, count, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { hotspotPlans, pageKey, portalApp, postJson, routerRow } from "./world.ts";

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

  it("buys a package only at the price the page showed: a price changed since is shown, and bought once confirmed", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    const pass = await createPlan(database.db, {
      name: "Repriced Pass",
      kind: "hotspot",
      priceCents: 5_000,
      periodUnit: "days",
      periodCount: 1,
    });
    const shown = await (await app.request(`/portal/${router.name}`)).text();
    const choice = new RegExp(`value="(${pass.id}:\\d+)" data-price="KES 50"`).exec(shown)![1]!;
    await database.db.execute(sql`update plans set price_cents = 20000 where id = ${pass.id}`);

    const phone = freshPhone();
    const stale = await postJson(app, `/portal/${router.name}/pay`, { plan: choice, phone, key: pageKey() });
    expect(stale.status).toBe(409);
    expect(await stale.json()).toEqual({
      error: "The price of that package has just changed: it is now KES 200. Check it, then pay again.",
      plan: { choice: `${pass.id}:20000`, price: "KES 200" },
    });
    expect(await intentsFor(phone)).toBe(0);

    const fresh = await (await app.request(`/portal/${router.name}`)).text();
    expect(fresh).toContain(`value="${pass.id}:20000" data-price="KES 200"`);
    const paid = await postJson(app, `/portal/${router.name}/pay`, {
      plan: `${pass.id}:20000`,
      phone,
      key: pageKey(),
    });
    expect(paid.status).toBe(200);
    const { intentId } = (await paid.json()) as { intentId: number };
    expect(await intent(database.db, intentId)).toMatchObject({ amountCents: 20_000, planId: pass.id });
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

  it("refuses a repeated page key sent with another package, even one of the same price, and a new key then buys it", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    // Another package at the 1 Hour package's price: the M-Pesa prompt alone cannot tell them apart.
    const night = await createPlan(database.db, {
      name: "Night Owl",
      kind: "hotspot",
      priceCents: plans.hour.priceCents,
      periodUnit: "hours",
      periodCount: 8,
    });
    const phone = freshPhone();
    const key = pageKey();
    const pay = (plan: number, payKey = key) =>
      postJson(app, `/portal/${router.name}/pay`, { plan, phone, key: payKey });
    const first = (await (await pay(plans.hour.id)).json()) as { intentId: number };
    // The answer to the first tap was lost; the buyer picks another package and taps again.
    const words =
      "A payment for another package or phone number was already started here. Check your phone for its M-Pesa prompt, or pay again to buy this package.";
    for (const plan of [night.id, plans.day.id]) {
      const again = await pay(plan);
      expect(again.status).toBe(400);
      expect(await again.json()).toEqual({ error: words });
    }
    expect(await intentsFor(phone)).toBe(1);
    expect((await intent(database.db, first.intentId)).planId).toBe(plans.hour.id);
    // The page's next tap carries a new key: a purchase of the package shown.
    const bought = (await (await pay(night.id, pageKey())).json()) as { intentId: number };
    expect((await intent(database.db, bought.intentId)).planId).toBe(night.id);
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
