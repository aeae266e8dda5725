import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../../src/db/client.ts";
import { paymentIntents, vouchers } from "../../src/db/schema/index.ts";
import { createTokenSigner } from "../../src/portal/token.ts";
import { answerPrompt, freshPhone, intent } from "../payments/harness.ts";
import { billingContext, count } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  hotspotPlans,
  pageKey,
  portalApp,
  postJson,
  routerRow,
  TOKEN_KEY,
  withPayingPortal,
} from "./world.ts";

let database: Database;
let plans: Awaited<ReturnType<typeof hotspotPlans>>;
beforeAll(async () => {
  database = await createTestDatabase();
  plans = await hotspotPlans(database.db);
});
afterAll(async () => {
  await database.close();
});

describe("following the payment", () => {
  it("goes pending → paid with the voucher the settlement made, through the Daraja fake", async () => {
    await withPayingPortal(database.db, async ({ h, router, app }) => {
      const phone = freshPhone();
      const { token, intentId } = (await (
        await postJson(app, `/portal/${router.name}/pay`, { plan: plans.hour.id, phone, key: pageKey() })
      ).json()) as { token: string; intentId: number };
      const status = async (lang = "en") =>
        (await app.request(`/portal/${router.name}/status/${token}?lang=${lang}`)).json() as Promise<
          Record<string, unknown>
        >;
      expect(await status()).toEqual({ state: "pending", message: "Waiting for your M-Pesa payment." });
      await answerPrompt(h, { outcome: "success", delayMs: 10 });
      const [voucher] = await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone));
      expect(voucher).toBeDefined();
      // Made for the hotspot it was bought at: not live at every site the ISP runs.
      expect(voucher!.routerId).toBe(router.id);
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
    });
  });

  it("says so when the payer cancels, the payment fails, or M-Pesa never answers", async () => {
    await withPayingPortal(database.db, async ({ h, router, app }) => {
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
        await answerPrompt(h, { outcome, delayMs: 10 });
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
    });
  });

  it("without JavaScript, 'Try again' after a cancelled payment leads back to the buy form", async () => {
    await withPayingPortal(database.db, async ({ h, router, app }) => {
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
      await answerPrompt(h, { outcome: "cancelled", delayMs: 10 });
      const ended = await (await app.request(res.headers.get("location")!)).text();
      expect(ended).toContain("You cancelled the M-Pesa prompt. Nothing was paid.");
      expect(ended).toMatch(/<form id="buy"[^>]* hidden>/);
      const retry = /<a id="again" class="button" href="([^"]+)">Try again<\/a>/.exec(ended)?.[1];
      expect(retry).toBeDefined();
      const again = await (await app.request(retry!.replace(/&amp;/g, "&"))).text();
      expect(again).toMatch(/<form id="buy" method="post" action="[^"]+">/);
      expect(again).toContain('<p class="error" id="result" role="alert" hidden></p>');
      expect(again).toContain('name="link-login-only" value="http://10.5.50.1/login"');
    });
  });

  it("without JavaScript, offers the login link only once the code is on the router, refreshing meanwhile", async () => {
    await withPayingPortal(database.db, async ({ h, router, app }) => {
      const phone = freshPhone();
      const res = await app.request(`/portal/${router.name}/pay`, {
        method: "POST",
        body: new URLSearchParams({
          plan: String(plans.hour.id),
          phone,
          key: pageKey(),
          lang: "en",
          "link-login-only": "http://10.5.50.1/login",
        }),
      });
      const location = res.headers.get("location")!;
      await answerPrompt(h, { outcome: "success", delayMs: 10 });
      const [voucher] = await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone));
      const refresh = '<noscript><meta http-equiv="refresh" content="5"></noscript>';
      // Paid, but the provisioning worker has not yet put the hotspot user on the router: a login
      // now would be refused, so the page shows the code and keeps looking, without a link.
      const preparing = await (await app.request(location)).text();
      expect(preparing).not.toContain(`username=${voucher!.code}`);
      expect(preparing).toContain(`<span class="code" id="code">${voucher!.code}</span>`);
      expect(preparing).toMatch(/<p id="done-preparing">Preparing your access…<\/p>/);
      expect(preparing).toContain(refresh);
      expect(preparing).not.toMatch(/<a id="login"[^>]*href="[^"]*"(?! hidden)>/);

      await database.db.execute(
        sql`update provisioning_outbox set status = 'done' where voucher_id = ${voucher!.id}`,
      );
      const ready = await (await app.request(location)).text();
      const link = /<a id="login" class="button" href="([^"]+)">Connect now<\/a>/.exec(ready)?.[1];
      expect(link?.replace(/&amp;/g, "&")).toBe(
        `http://10.5.50.1/login?username=${voucher!.code}&password=${voucher!.code}`,
      );
      expect(ready).not.toContain(refresh);
      expect(ready).not.toContain('id="done-preparing"');
    });
  });

  it("keeps the payment when the buyer switches language while waiting or once paid", async () => {
    await withPayingPortal(database.db, async ({ h, router, app }) => {
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

      await answerPrompt(h, { outcome: "success", delayMs: 10 });
      const [voucher] = await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone));
      const paidSw = await (await app.request(await languageLink(location))).text();
      expect(paidSw).toContain("Umelipa: unaunganishwa");
      expect(paidSw).toContain(`<span class="code" id="code">${voucher!.code}</span>`);
    });
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
