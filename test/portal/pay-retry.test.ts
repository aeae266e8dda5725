import { sql } from "drizzle-orm";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../../src/db/client.ts";
import { freshPhone } from "../payments/harness.ts";
import { billingContext, count } from "../support/billing.ts";
import { launchChromium, phonePage } from "../support/browser.ts";
import { createTestDatabase } from "../support/db.ts";
import { hotspotPlans, listen, portalApp, routerRow } from "./world.ts";

let database: Database;
let browser: Browser;
let server: { url: string; close(): Promise<void> };
let routerName: string;
beforeAll(async () => {
  browser = await launchChromium();
  database = await createTestDatabase();
  await hotspotPlans(database.db);
  routerName = (await routerRow(database.db)).name;
  server = await listen(portalApp(billingContext(database.db).ctx));
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await database?.close();
});

describe("the buy button after a lost answer", () => {
  it("a second tap after the portal's answer was lost on the Wi-Fi does not send a second M-Pesa prompt", async () => {
    const page = await phonePage(browser);
    const phone = freshPhone();
    try {
      // The first /pay reaches the portal (the intent is recorded, the prompt goes out), but its
      // answer never makes it back to the phone: the hotspot's Wi-Fi dropped it.
      let lost = false;
      await page.route("**/pay", async (route) => {
        if (lost) return route.continue();
        lost = true;
        await route.fetch();
        await route.abort("connectionreset");
      });
      await page.goto(
        `${server.url}/portal/${routerName}?link-login-only=${encodeURIComponent("http://10.5.50.1/login")}`,
      );
      await page.getByLabel(/Day Pass/).check();
      await page.getByLabel("M-Pesa phone number").fill(phone);
      await page.getByRole("button", { name: "Pay with M-Pesa" }).click();
      await expect
        .poll(() => page.locator("#buy-error").textContent())
        .toBe("No connection to the portal. Check your Wi-Fi and try again.");
      // The buyer does as told: tries again, for the same package.
      await page.getByRole("button", { name: "Pay with M-Pesa" }).click();
      await page.getByRole("heading", { name: "Check your phone" }).waitFor();
      expect(
        await count(database.db, sql`select count(*) as n from payment_intents where phone = ${phone}`),
      ).toBe(1);
    } finally {
      await page.context().close();
    }
  }, 60_000);
});
