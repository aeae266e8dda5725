import { join } from "node:path";
import { eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BillingContext, defaultBillingSettings } from "../../src/billing/context.ts";
import { createVoucherBatch, markVouchersSold } from "../../src/billing/vouchers.ts";
import { systemClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { vouchers } from "../../src/db/schema/index.ts";
import { emulatedRouter, networkStack, waitFor } from "../network/support.ts";
import { freshPhone, type Harness, startHarness } from "../payments/harness.ts";
import { expectAccessible } from "../support/accessibility.ts";
import { admin, count, createPlan } from "../support/billing.ts";
import { launchChromium, phonePage, SHOTS } from "../support/browser.ts";
import { createTestDatabase } from "../support/db.ts";
import { hotspotPlans, listen, listenHttps, portalApp } from "./world.ts";

/**
 * The captive portal in a real browser (Debian's chromium through playwright-core, at phone size):
 * a package is bought, the M-Pesa prompt approved in the Daraja fake, the provisioning worker puts
 * the voucher on an emulated RouterOS, and the page logs in at a fake hotspot login URL. As in
 * production, the portal is served over HTTPS (`wifi.test`) and the hotspot's login address is plain
 * http (`hotspot.lan`), both names resolved to this machine by Chromium.
 */

let database: Database;
let browser: Browser;
let harness: Harness;
let stack: ReturnType<typeof networkStack>;
let router: Awaited<ReturnType<typeof emulatedRouter>>;
let ctx: BillingContext;
let portal: { port: number; close(): Promise<void> };
let hotspot: { url: string; close(): Promise<void> };
let plans: Awaited<ReturnType<typeof hotspotPlans>>;
let dispatching: ReturnType<typeof setInterval>;
const logins: Record<string, string>[] = [];

beforeAll(async () => {
  browser = await launchChromium([
    "--host-resolver-rules=MAP wifi.test 127.0.0.1, MAP hotspot.lan 127.0.0.1",
  ]);
  database = await createTestDatabase();
  ctx = { db: database.db, clock: systemClock, settings: defaultBillingSettings };
  plans = await hotspotPlans(database.db);
  router = await emulatedRouter(database.db, "kiosk");
  stack = networkStack(database.db, systemClock, { worker: { pollMs: 100 } });
  stack.worker.start();
  harness = await startHarness(ctx);
  // The dispatcher sends what the portal recorded (in the app, payments.request wakes it at once).
  let busy = false;
  dispatching = setInterval(() => {
    if (busy) return;
    busy = true;
    void harness.dispatcher
      .runOnce()
      .catch(() => {})
      .finally(() => {
        busy = false;
      });
  }, 100);
  portal = await listenHttps(
    portalApp(ctx, {
      limits: { promptsPerWindow: 1 },
      pollMs: 300,
      voucherTriesPer5Min: 2,
      loginHosts: ["hotspot.lan"],
    }),
    "wifi.test",
  );
  // The hotspot's own login URL: records the login the page sent, as the router would receive it.
  const fakeHotspot = new Hono();
  fakeHotspot.get("/login", async (c) => {
    const form = c.req.query();
    logins.push(form);
    return c.html(
      `<!DOCTYPE html><html lang="en"><head><meta name="viewport" content="width=device-width, initial-scale=1"><title>Hotspot</title></head><body><h1>You are logged in</h1><p>User ${form.username}</p></body></html>`,
    );
  });
  hotspot = await listen(fakeHotspot);
}, 60_000);

afterAll(async () => {
  clearInterval(dispatching);
  await browser?.close();
  await portal?.close();
  await hotspot?.close();
  await harness?.close();
  await stack?.close();
  await router?.emulator.stop();
  await database?.close();
});

function portalUrl(lang?: "sw", device = { mac: "AA:BB:CC:00:11:22", ip: "10.5.50.23" }) {
  const query = new URLSearchParams({
    "link-login-only": `http://hotspot.lan:${new URL(hotspot.url).port}/login`,
    dst: "http://example.com/news",
    ...device,
  });
  if (lang) query.set("lang", lang);
  return `https://wifi.test:${portal.port}/portal/kiosk?${query}`;
}

/** A phone's page that accepts the portal's certificate, made for this run. */
const openPage = () => phonePage(browser, { ignoreHTTPSErrors: true });

describe("the captive portal in a phone's browser", () => {
  it("buys a package, is approved in the fake, and logs in at the hotspot's http address with a hotspot user that is on the router", async () => {
    const page = await openPage();
    const phone = freshPhone();
    try {
      await page.goto(portalUrl());
      await expect.poll(() => page.locator("h1").textContent()).toBe("Tandao Net Wi-Fi");
      await expectAccessible(page, "en");
      await page.screenshot({ path: join(SHOTS, "portal-plans-en.png"), fullPage: true });

      harness.fake.queue({ outcome: "success", delayMs: 400 });
      await page.getByLabel(/Day Pass/).check();
      await page.getByLabel("M-Pesa phone number").fill(phone.replace("+254", "0"));
      // A double tap: one prompt.
      await page.getByRole("button", { name: "Pay with M-Pesa" }).dblclick();
      await page.getByRole("heading", { name: "Check your phone" }).waitFor();
      // Switching language now would keep the payment being followed.
      expect(await page.getByRole("link", { name: "Kiswahili" }).getAttribute("href")).toMatch(
        /[?&]t=[\w.-]+/,
      );
      await expectAccessible(page, "en");
      await page.screenshot({ path: join(SHOTS, "portal-waiting.png"), fullPage: true });

      await waitFor(() => logins.length > 0, 30_000, 100);
      // Reached from the https portal, without Chromium's "not secure" form warning in between.
      await page.getByRole("heading", { name: "You are logged in" }).waitFor();
      expect(page.url()).toMatch(/^http:\/\/hotspot\.lan:\d+\/login\?/);
      await page.screenshot({ path: join(SHOTS, "portal-logged-in.png"), fullPage: true });

      expect(
        await count(database.db, sql`select count(*) as n from payment_intents where phone = ${phone}`),
      ).toBe(1);
      const [voucher] = await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone));
      expect(voucher).toMatchObject({ planId: plans.day.id, status: "sold" });
      expect(logins).toEqual([
        { username: voucher!.code, password: voucher!.code, dst: "http://example.com/news" },
      ]);
      const user = router.emulator.find("/ip/hotspot/user", logins[0]!.username!);
      expect(user).toBeDefined();
      expect(user!.password).toBe(logins[0]!.password);
      expect(user!.comment).toBe(`tandao:voucher:${voucher!.id}`);
    } finally {
      await page.context().close();
    }

    // The same phone again within the limit window (one prompt per window here): refused, and said so.
    const again = await openPage();
    try {
      await again.goto(portalUrl());
      await again.getByLabel(/1 Hour/).check();
      await again.getByLabel("M-Pesa phone number").fill(phone);
      await again.getByRole("button", { name: "Pay with M-Pesa" }).click();
      await expect
        .poll(() => again.locator("#buy-error").textContent())
        .toBe("Too many payment prompts: at most 1 in 5 minutes. Please wait and try again.");
      await again.screenshot({ path: join(SHOTS, "portal-limit.png"), fullPage: true });
      expect(
        await count(database.db, sql`select count(*) as n from payment_intents where phone = ${phone}`),
      ).toBe(1);
    } finally {
      await again.context().close();
    }
  }, 90_000);

  it("shows a package's new price when it changed while the page was open, and asks for nothing at the old one", async () => {
    const week = await createPlan(database.db, {
      name: "Week Pass",
      kind: "hotspot",
      priceCents: 25_000,
      periodUnit: "days",
      periodCount: 7,
    });
    const page = await openPage();
    const phone = freshPhone();
    try {
      await page.goto(portalUrl());
      const card = page.locator("label.plan", { hasText: "Week Pass" });
      expect(await card.locator(".price").textContent()).toBe("KES 250");
      await database.db.execute(sql`update plans set price_cents = 30000 where id = ${week.id}`);

      await page.getByLabel(/Week Pass/).check();
      await page.getByLabel("M-Pesa phone number").fill(phone.replace("+254", "0"));
      await page.getByRole("button", { name: "Pay with M-Pesa" }).click();
      await expect
        .poll(() => page.locator("#buy-error").textContent())
        .toBe("The price of that package has just changed: it is now KES 300. Check it, then pay again.");
      expect(await card.locator(".price").textContent()).toBe("KES 300");
      expect(
        await count(database.db, sql`select count(*) as n from payment_intents where phone = ${phone}`),
      ).toBe(0);

      // Pressed again, the form asks for the package at the price now shown (buying.test.ts buys it).
      expect(await page.getByLabel(/Week Pass/).getAttribute("value")).toBe(`${week.id}:30000`);
    } finally {
      await page.context().close();
    }
  }, 60_000);

  it("refuses a foreign number with a clear message, in Kiswahili too", async () => {
    const page = await openPage();
    try {
      await page.goto(portalUrl("sw"));
      await expectAccessible(page, "sw");
      await page.screenshot({ path: join(SHOTS, "portal-plans-sw.png"), fullPage: true });
      await page.getByLabel(/Saa 1/).check();
      await page.getByLabel("Nambari ya simu ya M-Pesa").fill("+447912345678");
      await page.getByRole("button", { name: "Lipa kwa M-Pesa" }).click();
      await expect
        .poll(() => page.locator("#buy-error").textContent())
        .toMatch(/^Samahani, Tandao Net haihudumii nambari za simu za /);
      await expectAccessible(page, "sw");
      await page.screenshot({ path: join(SHOTS, "portal-foreign-sw.png"), fullPage: true });

      await page.getByRole("link", { name: "English" }).click();
      await page.getByLabel(/1 Hour/).check();
      await page.getByLabel("M-Pesa phone number").fill("+447912345678");
      await page.getByRole("button", { name: "Pay with M-Pesa" }).click();
      await expect
        .poll(() => page.locator("#buy-error").textContent())
        .toBe("Sorry, Tandao Net does not serve phone numbers from United Kingdom.");
      await page.screenshot({ path: join(SHOTS, "portal-foreign-en.png"), fullPage: true });
      expect(
        await count(
          database.db,
          sql`select count(*) as n from payment_intents where phone = '+447912345678'`,
        ),
      ).toBe(0);
    } finally {
      await page.context().close();
    }
  }, 60_000);

  it("says when a printed code is not valid, holds back one phone's guessing, and connects another phone's valid code", async () => {
    const guesser = await openPage();
    const batch = await createVoucherBatch(ctx, admin, {
      planId: plans.hour.id,
      quantity: 1,
      routerId: router.routerId,
    });
    await markVouchersSold(ctx, admin, { codes: batch.codes });
    const code = batch.codes[0]!;
    const tryCode = async (page: Page, typed: string) => {
      await page.getByLabel("Voucher code").fill(typed);
      await page.getByRole("button", { name: "Connect with code" }).click();
      // The script disables the button while it asks, and enables it again once the answer is shown.
      await page.locator("#voucher-go:not([disabled])").waitFor();
      return page.locator("#voucher-error").textContent();
    };
    try {
      await guesser.goto(portalUrl());
      expect(await tryCode(guesser, "ABCD-EFGH")).toBe("That code is not valid. Check it and try again.");
      await expectAccessible(guesser, "en");
      await guesser.locator("#voucher").screenshot({ path: join(SHOTS, "portal-voucher-error.png") });
      // Two tries per phone here: the third is held back.
      expect(await tryCode(guesser, "ABCD-EFGK")).toBe("That code is not valid. Check it and try again.");
      expect(await tryCode(guesser, "ABCD-EFGM")).toBe("Too many tries. Please wait a few minutes.");
    } finally {
      await guesser.context().close();
    }
    // Another phone at the same hotspot (the same address to the portal) is not held back.
    const walkIn = await openPage();
    try {
      await walkIn.goto(portalUrl(undefined, { mac: "AA:BB:CC:00:11:33", ip: "10.5.50.24" }));
      await walkIn.getByLabel("Voucher code").fill(code);
      await walkIn.getByRole("button", { name: "Connect with code" }).click();
      await walkIn.getByRole("heading", { name: "You are logged in" }).waitFor();
      expect(logins.filter((l) => l.username === code)).toEqual([
        { username: code, password: code, dst: "http://example.com/news" },
      ]);
    } finally {
      await walkIn.context().close();
    }
  }, 60_000);
});
