import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createVoucherBatch, markVouchersSold } from "../../src/billing/vouchers.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { vouchers } from "../../src/db/schema/index.ts";
import { admin, billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { hotspotPlans, portalApp, postJson, routerRow } from "./world.ts";

let database: Database;
let plans: Awaited<ReturnType<typeof hotspotPlans>>;
beforeAll(async () => {
  database = await createTestDatabase();
  plans = await hotspotPlans(database.db);
});
afterAll(async () => {
  await database.close();
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
    // Nothing was paid here, and no SMS carries a printed code.
    expect(page).toContain("Code accepted: you are being connected");
    expect(page).not.toMatch(/Paid:|sent by SMS/);

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
  it("holds back one phone's guessing without locking out the other phones at the hotspot, and caps the site's lookups", async () => {
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
    // Claiming to be a new phone at each guess meets the site's cap on lookups (8 here), which
    // counts them all: past it the portal no longer says whether a code is valid.
    const rotating: number[] = [];
    for (let i = 0; i < 5; i++)
      rotating.push(await tryCode("ZZZZZZZZ", `02:00:00:00:01:0${i}`, `10.5.50.${100 + i}`));
    expect(rotating).toEqual([404, 404, 404, 404, 200]);
    expect(await tryCode(batch.codes[1]!, "AA:BB:CC:00:11:44", "10.5.50.10")).toBe(200);
  });
  it("one visitor claiming a new phone at every guess does not lock the hotspot's printed codes out", async () => {
    const { ctx } = billingContext(database.db);
    const router = await routerRow(database.db);
    const app = portalApp(ctx, { voucherTriesPer5Min: 3, voucherTriesPerAddressPer5Min: 8 });
    const batch = await createVoucherBatch(ctx, admin, {
      planId: plans.hour.id,
      quantity: 1,
      routerId: router.id,
    });
    await markVouchersSold(ctx, admin, { codes: batch.codes });
    const login = "http://10.5.50.1/login";
    const tryCode = async (code: string, mac: string) => {
      const res = await postJson(
        app,
        `/portal/${router.name}/voucher?${new URLSearchParams({ mac, "link-login-only": login })}`,
        { code },
      );
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    // The MAC is whatever the page's address says: editing it makes a new phone at every guess.
    const guesses: number[] = [];
    for (let i = 0; i < 12; i++) guesses.push((await tryCode("ZZZZZZZZ", `02:00:00:00:02:${10 + i}`)).status);
    expect(guesses.slice(0, 8)).toEqual(Array(8).fill(404));
    // Another visitor's printed code still connects.
    const code = batch.codes[0]!;
    expect(await tryCode(code.toLowerCase(), "AA:BB:CC:00:11:66")).toMatchObject({
      status: 200,
      body: { username: code, password: code },
    });
    // Past the site's lookups a guess learns nothing: every code gets the same answer, and the
    // hotspot's own login, which knows only the codes on the router, decides.
    expect(guesses.slice(8)).toEqual(Array(4).fill(200));
    expect(await tryCode("ZZZZ-ZZZZ", "02:00:00:00:03:01")).toEqual({
      status: 200,
      body: { username: "ZZZZZZZZ", password: "ZZZZZZZZ", unchecked: true },
    });
    // What cannot be a code is still refused plainly, and one phone is still held to its own tries.
    expect(await tryCode("no!", "02:00:00:00:03:02")).toEqual({
      status: 404,
      body: { error: "That code is not valid. Check it and try again." },
    });
    const one: number[] = [];
    for (let i = 0; i < 3; i++) one.push((await tryCode("ZZZZZZZZ", "02:00:00:00:03:03")).status);
    expect(one).toEqual([200, 200, 200]);
    expect((await tryCode(code, "02:00:00:00:03:03")).status).toBe(429);
    // Without JavaScript: a link to the hotspot's login, saying the code could not be checked here.
    const form = await app.request(
      `/portal/${router.name}/voucher?${new URLSearchParams({ mac: "AA:BB:CC:00:11:77", "link-login-only": login })}`,
      { method: "POST", body: new URLSearchParams({ code, lang: "en" }) },
    );
    const page = await form.text();
    expect(page).toContain(`href="${login}?username=${code}&amp;password=${code}"`);
    expect(page).toContain(
      "We cannot check codes here just now: the hotspot will let you in if this code is valid.",
    );
  });
});
