import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../../src/db/client.ts";
import { contrast, parseHex, safeLoginUrl, themeFrom, themePairs } from "../../src/portal/index.ts";
import { freshPhone, intent } from "../payments/harness.ts";
import { billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { hotspotPlans, pageKey, portalApp, postJson, routerRow } from "./world.ts";

let database: Database;
let _plans: Awaited<ReturnType<typeof hotspotPlans>>;
beforeAll(async () => {
  database = await createTestDatabase();
  _plans = await hotspotPlans(database.db);
});
afterAll(async () => {
  await database.close();
});

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
    expect(page).toContain(`value="${promo.id}:2050" data-price="KES 21"`);
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
