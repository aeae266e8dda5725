import { join } from "node:path";
import { eq } from "drizzle-orm";
import type { Browser, Locator, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { paymentIntents } from "../../src/db/schema/index.ts";
import { DEMO_PHONE } from "../../src/sandbox/seed.ts";
import { expectAccessible } from "../support/accessibility.ts";
import { launchChromium, phonePage, SHOTS } from "../support/browser.ts";
import { type SandboxWorld, startSandboxWorld } from "./world.ts";

/**
 * The sandbox simulator in a real browser (Debian's chromium through playwright-core, at phone
 * size), on a fresh sandbox start: the demo subscriber dials the USSD menu, pays what she owes, and
 * answers the M-Pesa prompt on the drawn phone; the SMS and the router pane follow.
 */

const WAIT = { timeout: 30_000 };

let browser: Browser;
let world: SandboxWorld;

beforeAll(async () => {
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
});

// Each test starts from a fresh sandbox: the demo subscriber owes her first month.
beforeEach(async () => {
  world = await startSandboxWorld();
}, 60_000);

afterEach(async () => {
  await world?.close();
});

/** Opens the simulator as the demo subscriber and dials `*384*1#`, then Pay → the amount due. */
async function dialAndPay(page: Page): Promise<Locator> {
  await page.goto(`${world.url}/simulator`);
  await page.getByRole("heading", { name: "Sandbox simulator" }).waitFor();
  await page.getByRole("button", { name: `Demo subscriber ${DEMO_PHONE}` }).click();
  const phone = page.locator(`[data-phone="${DEMO_PHONE}"]`);
  const handset = phone.getByRole("group", { name: "Feature phone" });
  const screen = handset.locator(".ussd");
  // The router pane has been read once the demo subscriber's secret shows.
  await page.locator('#secrets tr[data-name="wanjiku"]').waitFor(WAIT);
  await expectAccessible(page);

  await expect.poll(() => handset.getByLabel("Keypad").inputValue()).toBe("*384*1#");
  await handset.getByRole("button", { name: "Call" }).click();
  await screen.filter({ hasText: "2. Pay" }).waitFor(WAIT);
  expect(await screen.textContent()).toBe(
    "Tandao Net\n1. My account\n2. Pay\n3. Buy hotspot voucher\n4. Change plan\n5. Language\n6. Help",
  );
  await handset.getByLabel("Keypad").fill("2");
  await handset.getByRole("button", { name: "Send" }).click();
  await screen.filter({ hasText: "You owe" }).waitFor(WAIT);
  expect(await screen.textContent()).toBe(
    "You owe KES 2,500.\n1. Pay KES 2,500 now\n2. Pay another amount\n3. Pay from another M-Pesa number\n0. Back",
  );
  await page.screenshot({ path: join(SHOTS, "simulator-ussd.png") });
  await handset.getByLabel("Keypad").fill("1");
  await handset.getByRole("button", { name: "Send" }).click();

  // The push waits in the Daraja fake for the person's answer, shown on the phone.
  const prompt = phone.getByRole("dialog", { name: "M-Pesa prompt" });
  await prompt.waitFor(WAIT);
  expect(await prompt.locator(".prompt-text").textContent()).toBe(
    "Pay KES 2,500 to Tandao Net (account TD00001)? Enter M-Pesa PIN",
  );
  expect(world.daraja.pendingPushes(DEMO_PHONE)).toMatchObject([
    { amount: 2_500, accountReference: "TD00001" },
  ]);
  await expectAccessible(page);
  await page.screenshot({ path: join(SHOTS, "simulator-prompt.png") });
  return phone;
}

async function demoIntents() {
  return world.database.db.select().from(paymentIntents).where(eq(paymentIntents.phone, DEMO_PHONE));
}

describe("the sandbox simulator in a phone's browser", () => {
  it("dials the menu, pays the amount due with the PIN, gets the receipt SMS and the PPPoE secret enabled", async () => {
    const page = await phonePage(browser);
    try {
      const phone = await dialAndPay(page);
      expect(await page.locator('#secrets tr[data-name="wanjiku"] td.disabled').textContent()).toBe("yes");
      const prompt = phone.getByRole("dialog", { name: "M-Pesa prompt" });

      // Pay needs a 4-digit PIN.
      await prompt.getByRole("button", { name: "Pay" }).click();
      await prompt.getByText("Enter your 4-digit M-Pesa PIN.").waitFor();
      await prompt.getByLabel("M-Pesa PIN").fill("1234");
      await prompt.getByRole("button", { name: "Pay" }).click();
      await prompt.waitFor({ state: "hidden" });

      const receipt = phone.locator(".sms li", { hasText: "We received KES 2,500" });
      await receipt.waitFor(WAIT);
      expect(await receipt.textContent()).toMatch(
        /Tandao Net: We received KES 2,500 \(M-Pesa [A-Z0-9]{10}\) for account TD00001/,
      );
      await page.locator('#secrets tr[data-name="wanjiku"] td.disabled', { hasText: "no" }).waitFor(WAIT);
      expect(world.emulator.find("/ppp/secret", "wanjiku")?.disabled).toBe("false");
      expect((await demoIntents()).map((i) => i.status)).toEqual(["succeeded"]);
      await expectAccessible(page);
      await page.screenshot({ path: join(SHOTS, "simulator-paid.png"), fullPage: true });
    } finally {
      await page.context().close();
    }
  }, 90_000);

  it("declines the prompt: the failure SMS arrives and nothing is enabled on the router", async () => {
    const page = await phonePage(browser);
    try {
      const phone = await dialAndPay(page);
      const prompt = phone.getByRole("dialog", { name: "M-Pesa prompt" });
      await prompt.getByRole("button", { name: "Cancel" }).click();
      await prompt.waitFor({ state: "hidden" });

      const failure = phone.locator(".sms li", { hasText: "did not go through" });
      await failure.waitFor(WAIT);
      expect(await failure.textContent()).toContain(
        "Tandao Net: Your payment of KES 2,500 did not go through",
      );
      expect((await demoIntents()).map((i) => i.status)).not.toContain("succeeded");
      // Nothing enabled: the secret stays disabled, on the router and in the pane; no hotspot user.
      expect(world.emulator.find("/ppp/secret", "wanjiku")?.disabled).toBe("true");
      expect(await page.locator('#secrets tr[data-name="wanjiku"] td.disabled').textContent()).toBe("yes");
      expect(world.emulator.items("/ip/hotspot/user")).toEqual([]);
      expect(world.daraja.pendingPushes()).toEqual([]);
      await page.screenshot({ path: join(SHOTS, "simulator-declined.png"), fullPage: true });
    } finally {
      await page.context().close();
    }
  }, 90_000);

  it("chats with the bot on WhatsApp and Telegram through their fakes", async () => {
    const page = await phonePage(browser);
    try {
      await page.goto(`${world.url}/simulator?phone=${encodeURIComponent(DEMO_PHONE)}`);
      const phone = page.locator(`[data-phone="${DEMO_PHONE}"]`);
      // A second phone beside her: a stranger, who dials into the menu for non-subscribers.
      await page.getByRole("button", { name: /^Stranger / }).click();
      expect(await page.getByRole("tab").allTextContents()).toEqual([DEMO_PHONE, "+254799000111"]);
      const stranger = page
        .locator('[data-phone="+254799000111"]')
        .getByRole("group", { name: "Feature phone" });
      await stranger.getByRole("button", { name: "Call" }).click();
      await stranger.locator(".ussd", { hasText: "1. Buy hotspot voucher" }).waitFor(WAIT);
      expect(await phone.isHidden()).toBe(true);
      await page.getByRole("tab", { name: DEMO_PHONE }).click();
      await phone.waitFor();
      const chat = phone.getByRole("region", { name: "Chat" });
      await chat.getByLabel("WhatsApp").check();
      await chat.getByLabel("Message").fill("hi");
      await chat.getByRole("button", { name: "Send", exact: true }).click();
      // WhatsApp knows her by her number: the bot links the account and shows the menu.
      await chat.locator("li:not(.me)", { hasText: "Linked to account TD00001." }).waitFor(WAIT);
      await chat.locator("li:not(.me)", { hasText: "1. My account · 2. Pay" }).waitFor(WAIT);

      await chat.getByLabel("Telegram").check();
      await chat.getByLabel("Message").fill("/start");
      await chat.getByRole("button", { name: "Send", exact: true }).click();
      // Telegram does not know her number until she shares it.
      await chat.locator("li:not(.me)", { hasText: "Buttons: Share my phone number" }).waitFor(WAIT);
      await chat.getByRole("button", { name: "Share my number" }).click();
      await chat.locator("li:not(.me)", { hasText: "TD00001" }).waitFor(WAIT);
      await expectAccessible(page);
      await page.screenshot({ path: join(SHOTS, "simulator-chat.png"), fullPage: true });
    } finally {
      await page.context().close();
    }
  }, 90_000);
});
