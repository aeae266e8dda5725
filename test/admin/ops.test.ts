import { and, eq, inArray, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditMany } from "../../src/billing/audit.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { syncReportText } from "../../src/bots/admin/features/sync.ts";
import { adminBackgroundFinished } from "../../src/bots/admin/index.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { jobRuns, messageOutbox, provisioningOutbox, routers } from "../../src/db/schema/index.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { reconcileJobName, reconcileRouter } from "../../src/network/reconcile.ts";
import { emptyCounts } from "../../src/network/reconcile-plan.ts";
import { emulatedRouter, networkStack } from "../network/support.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  ADMIN_GROUP,
  type AdminWorld,
  auditRows,
  lastText,
  OWNER,
  shownIn,
  startAdminWorld,
} from "./world.ts";

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
let world: AdminWorld;
let emulator: RouterOsEmulator;
let routerId: number;
let routerName: string;
let stack: ReturnType<typeof networkStack>;
let kicks = 0;
const clock = new FakeClock(new Date());
const SUPPORT = 6_200_002;
const VIEWER = 6_200_003;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  ({ emulator, routerId } = await emulatedRouter(database.db, "Kibera-Core"));
  routerName = "Kibera-Core";
  stack = networkStack(database.db, clock, { connection: { connectTimeoutMs: 1_000 } });
  world = await startAdminWorld(ctx, {
    network: {
      reconcileRouter: (id, options) =>
        reconcileRouter({ db: database.db, clock, pool: stack.pool }, id, options),
      kick: () => {
        kicks++;
      },
    },
  });
  await world.say(OWNER, `/admin_add ${SUPPORT} support Sam`);
  await world.say(OWNER, `/admin_add ${VIEWER} viewer Vic`);
});
afterAll(async () => {
  await adminBackgroundFinished(database?.db);
  await world?.close();
  await stack?.close();
  await emulator?.stop();
  await database?.close();
});

/** A paid subscriber on the emulated router. */
async function activeSubscriber(planId: number, name: string) {
  const created = await createCustomerWithSubscription(ctx, admin, {
    name,
    phone: uniquePhone(),
    planId,
    routerId,
  });
  await applyPayment(ctx, admin, {
    customerId: created.customer.id,
    method: "cash",
    provider: "cash",
    providerRef: `first-${created.customer.id}`,
    amountCents: created.invoice.amountCents,
  });
  return created;
}

/** Runs what `/sync` started after the update, then sends what it queued. */
async function afterBackground() {
  await adminBackgroundFinished(database.db);
  await world.sendQueued();
}

describe("/routers", () => {
  it("shows each router's state, last contact, queue, dead jobs and last error, to every role", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000, rateLimit: "4M/8M" });
    await activeSubscriber(plan.id, "Amina");
    const [other] = await database.db
      .insert(routers)
      .values({
        name: "Mathare-2",
        host: "10.9.9.9",
        username: "api",
        passwordEncrypted: "x",
        lastContactAt: new Date(clock.now().getTime() - 3_600_000),
        lastErrorAt: clock.now(),
        lastError: "connect ETIMEDOUT 10.9.9.9:8728",
      })
      .returning();
    await database.db.insert(provisioningOutbox).values([
      { routerId: other!.id, action: "ensure_account", nextAttemptAt: clock.now(), createdAt: clock.now() },
      {
        routerId: other!.id,
        action: "suspend",
        status: "dead",
        attempts: 8,
        lastError: "timeout",
        nextAttemptAt: clock.now(),
        doneAt: clock.now(),
        createdAt: clock.now(),
      },
    ]);
    await world.say(VIEWER, "/routers");
    const text = lastText(world.fake, VIEWER);
    expect(text).toMatch(/Routers \(2\):/);
    expect(text).toMatch(/Kibera-Core \(127\.0\.0\.1:\d+\) — ⚪ not contacted yet/);
    expect(text).toMatch(/Mathare-2 \(10\.9\.9\.9:8728\) — 🔴 DOWN\n {3}last contact .* · queue 1 · dead 1/);
    expect(text).toMatch(/last error .*ETIMEDOUT/);
    expect(text).toMatch(/\/retry <router>/);
    // Amina's account waits for Kibera-Core.
    expect(text).toMatch(/Kibera-Core[^\n]*\n {3}last contact never · queue \d+ · dead 0/);
  });
});

describe("/sync's report", () => {
  it("names a voucher's hotspot user by its marker, never by the code someone paid for", () => {
    const text = syncReportText(
      {
        routerId: 1,
        routerName: "Kibera-Core",
        dryRun: true,
        ok: true,
        drift: [
          { menu: "/ip/hotspot/active", name: "K7P4M2QX", marker: "tandao:voucher:42", issue: "extra" },
          { menu: "/ppp/secret", name: "td00001", marker: "tandao:sub:7", issue: "missing" },
        ],
        counts: { ...emptyCounts(), kicked: 1, created: 1 },
        durationMs: 5,
      },
      "Africa/Nairobi",
      new Date("2026-06-01T06:00:00Z"),
    );
    expect(text).toContain("• /ip/hotspot/active tandao:voucher:42: extra");
    expect(text).not.toContain("K7P4M2QX");
    expect(text).toContain("• /ppp/secret td00001: missing");
  });
});

describe("/sync", () => {
  it("answers 'started' at once, then queues the report: a dry run changes nothing, a sync repairs", async () => {
    await stack.worker.drain();
    const secrets = () => emulator.items("/ppp/secret").filter((s) => s.comment?.startsWith("tandao:"));
    const [amina] = secrets();
    expect(amina).toBeDefined();
    emulator.delete("/ppp/secret", amina![".id"]!);
    expect(secrets()).toHaveLength(0);

    // The webhook answers before the reconciliation runs; "started" is shown first, then the report.
    let before = shownIn(world.fake, OWNER).length;
    await world.say(OWNER, `/sync ${routerName.toLowerCase()} dry`);
    await afterBackground();
    const [started, dry] = shownIn(world.fake, OWNER)
      .slice(before)
      .map((c) => String(c.payload.text));
    expect(started).toMatch(/Reconciliation of Kibera-Core \(dry run.*started/);
    expect(dry).toMatch(/Reconciliation of Kibera-Core \(dry run\)/);
    expect(dry).toMatch(/to add 1 · to fix 0 · to remove 0 · failed 0/);
    expect(dry).toMatch(/\/ppp\/secret .*: missing/);
    expect(secrets()).toHaveLength(0);

    before = shownIn(world.fake, OWNER).length;
    await world.say(OWNER, `/sync ${routerId}`);
    await afterBackground();
    expect(String(shownIn(world.fake, OWNER)[before]?.payload.text)).toMatch(/started/);
    expect(lastText(world.fake, OWNER)).toMatch(
      /✅ Reconciliation of Kibera-Core,.*\nadded 1 · fixed 0 · removed 0 · failed 0/,
    );
    expect(secrets()).toHaveLength(1);

    const requested = await auditRows(database.db, "router.sync_requested", `tg:${OWNER}`);
    expect(requested.map((r) => r.details.dryRun)).toEqual([true, false]);
    const synced = await auditRows(database.db, "router.synced", `tg:${OWNER}`);
    expect(synced).toHaveLength(1);
    expect(synced[0]!.details).toMatchObject({ created: 1, ok: true });
    const runs = await database.db.select().from(jobRuns).where(eq(jobRuns.job, reconcileJobName));
    expect(runs.map((r) => r.status)).toEqual(["ok"]);
  });

  it("does not overlap another reconciliation run: it says so and does nothing", async () => {
    const [open] = await database.db
      .insert(jobRuns)
      .values({ job: reconcileJobName, startedAt: clock.now(), status: "ok" })
      .returning();
    await world.say(OWNER, `/sync ${routerName}`);
    await afterBackground();
    expect(lastText(world.fake, OWNER)).toMatch(/another reconciliation is running now; nothing was done/);
    await database.db.update(jobRuns).set({ finishedAt: clock.now() }).where(eq(jobRuns.id, open!.id));
  });

  it("reports a router that cannot be reached as failed", async () => {
    const [ghost] = await database.db
      .insert(routers)
      .values({ name: "Ghost", host: "127.0.0.1", port: 1, username: "x", passwordEncrypted: "x" })
      .returning();
    await world.say(OWNER, "/sync Ghost");
    await afterBackground();
    expect(lastText(world.fake, OWNER)).toMatch(/❌ Reconciliation of Ghost[\s\S]*failed 1[\s\S]*Failed: /);
    await database.db.delete(routers).where(eq(routers.id, ghost!.id));
  });

  it("validates its words and refuses support; an unknown router is named", async () => {
    await world.say(OWNER, "/sync");
    expect(lastText(world.fake, OWNER)).toMatch(/Say which router\.\nUsage: \/sync <router> \[dry\]/);
    await world.say(OWNER, "/sync Kibera-Core now");
    expect(lastText(world.fake, OWNER)).toMatch(/Only "dry" may follow/);
    await world.say(OWNER, "/sync Nowhere");
    expect(lastText(world.fake, OWNER)).toBe('No router "Nowhere". /routers lists them.');
    await world.say(SUPPORT, "/sync Kibera-Core");
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/sync/);
    const refused = await auditRows(database.db, "admin.refused", `tg:${SUPPORT}`);
    expect(refused.map((r) => r.entityId)).toContain("sync");
  });
});

describe("/retry", () => {
  it("puts a router's dead jobs, and those for any router, back in the queue in one audited transaction", async () => {
    const dead = await database.db
      .insert(provisioningOutbox)
      .values(
        // The second: a voucher sold without a router, whose hotspot user goes to every router.
        [routerId, null].map((target) => ({
          routerId: target,
          action: "ensure_account" as const,
          status: "dead" as const,
          attempts: 8,
          lastError: "trap: failure",
          nextAttemptAt: clock.now(),
          doneAt: clock.now(),
          createdAt: clock.now(),
        })),
      )
      .returning({ id: provisioningOutbox.id });
    await world.say(VIEWER, `/retry ${routerName}`);
    expect(lastText(world.fake, VIEWER)).toMatch(/Your role \(viewer\) may not use \/retry/);

    const before = kicks;
    await world.say(OWNER, `/retry ${routerName}`);
    expect(lastText(world.fake, OWNER)).toMatch(/2 given-up jobs of Kibera-Core queued again/);
    expect(kicks).toBe(before + 1);
    const rows = await database.db
      .select()
      .from(provisioningOutbox)
      .where(
        inArray(
          provisioningOutbox.id,
          dead.map((d) => d.id),
        ),
      );
    expect(rows.map((r) => [r.status, r.attempts, r.doneAt])).toEqual([
      ["pending", 0, null],
      ["pending", 0, null],
    ]);
    const audited = await auditRows(database.db, "provisioning.retried", `tg:${OWNER}`);
    expect(audited).toHaveLength(1);
    expect(audited[0]!.details).toMatchObject({ count: 2, router: routerName });

    await world.say(OWNER, `/retry ${routerName}`);
    expect(lastText(world.fake, OWNER)).toBe("Kibera-Core has no given-up jobs.");
    await world.say(OWNER, "/retry");
    expect(lastText(world.fake, OWNER)).toMatch(/Say which router/);
  });
});

describe("/failed", () => {
  it("lists dead messages and dead router jobs, newest first, ten each", async () => {
    await database.db.insert(messageOutbox).values(
      Array.from({ length: 12 }, (_, i) => ({
        channel: "sms" as const,
        recipient: `+2547000000${String(i).padStart(2, "0")}`,
        template: "receipt",
        status: "dead" as const,
        attempts: 5,
        lastError: `rejected ${i}`,
        nextAttemptAt: clock.now(),
        createdAt: clock.now(),
      })),
    );
    await world.say(VIEWER, "/failed");
    const text = lastText(world.fake, VIEWER);
    expect(text).toMatch(/Messages given up \(newest 10\):/);
    expect(text).toMatch(/rejected 11/);
    expect(text).not.toMatch(/rejected 1\b/);
    expect(text.indexOf("rejected 11")).toBeLessThan(text.indexOf("rejected 10"));
    expect(text).toMatch(
      /Router jobs given up \(newest 1\):\n {2}• #\d+ .* suspend on Mathare-2 \(8 tries\): timeout/,
    );
  });

  it("/resend sends a given-up voucher code again, or by SMS to another number", async () => {
    // As the SMS worker leaves a message whose number refuses the sender's messages.
    const [dead] = await database.db
      .insert(messageOutbox)
      .values({
        channel: "sms",
        recipient: "+254700000777",
        template: "voucher_code",
        params: { code: "K7M2Q9XP", plan: "Day pass", validity: "2026-06-02T06:00:00.000Z" },
        status: "dead",
        attempts: 1,
        lastError: "406: the number opted out of messages from this sender",
        nextAttemptAt: clock.now(),
        createdAt: clock.now(),
      })
      .returning();
    // The code is internet anyone can use: read out only by whom may send it again, in private.
    await world.say(VIEWER, "/failed");
    expect(lastText(world.fake, VIEWER)).toContain(`#${dead!.id} `);
    expect(lastText(world.fake, VIEWER)).toContain("(voucher_code code hidden, 1 tries): 406");
    expect(lastText(world.fake, VIEWER)).not.toContain("K7M2Q9XP");
    expect(lastText(world.fake, VIEWER)).toContain("/resend <#number> [phone]");
    await world.say(OWNER, "/failed", ADMIN_GROUP);
    expect(lastText(world.fake, ADMIN_GROUP)).toContain("(voucher_code code hidden, 1 tries)");
    expect(lastText(world.fake, ADMIN_GROUP)).not.toContain("K7M2Q9XP");
    await world.say(OWNER, "/failed");
    expect(lastText(world.fake, OWNER)).toContain("(voucher_code K7M2Q9XP, 1 tries): 406");

    await world.say(SUPPORT, `/resend #${dead!.id}`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/may not use \/resend/);
    for (const [typed, answer] of [
      ["/resend", /Say the message's number/],
      ["/resend #999999999", /^No message #999999999\./],
      [`/resend #${dead!.id} 12`, /"12" is not a phone number/],
    ] as const) {
      await world.say(OWNER, typed);
      expect(lastText(world.fake, OWNER)).toMatch(answer);
    }

    await world.say(OWNER, `/resend #${dead!.id} 0711 222333`);
    expect(lastText(world.fake, OWNER)).toBe(
      `🔁 Message #${dead!.id} (voucher_code) queued again as an SMS to 0711 222333.`,
    );
    const copies = await database.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.recipient, "+254711222333"));
    expect(copies).toMatchObject([
      { channel: "sms", template: "voucher_code", status: "pending", params: { code: "K7M2Q9XP" } },
    ]);

    // A router login or a link code is its owner's alone: never to another number, never shown.
    const [login, linkCode] = await database.db
      .insert(messageOutbox)
      .values(
        (["activated", "chat_link_code"] as const).map((template) => ({
          channel: "sms" as const,
          recipient: "+254700000778",
          template,
          params: { code: "493817", account: "TD00009" },
          status: "dead" as const,
          attempts: 5,
          nextAttemptAt: clock.now(),
          createdAt: clock.now(),
        })),
      )
      .returning();
    await world.say(VIEWER, "/failed");
    expect(lastText(world.fake, VIEWER)).not.toContain("493817");
    await world.say(OWNER, `/resend #${login!.id} 0711 222333`);
    expect(lastText(world.fake, OWNER)).toBe(
      `Only a voucher code goes to another number; #${login!.id} is activated, for its own recipient only: /resend ${login!.id}.`,
    );
    await world.say(OWNER, `/resend #${linkCode!.id} 0711 222333`);
    expect(lastText(world.fake, OWNER)).toMatch(/^Only a voucher code goes to another number/);
    expect(
      await database.db.select().from(messageOutbox).where(eq(messageOutbox.recipient, "+254711222333")),
    ).toHaveLength(1);

    // Resent a day later: it is queued anew, and how long it may wait counts from now.
    clock.advance(24 * 60 * 60_000);
    await world.say(OWNER, `/resend ${dead!.id}`);
    expect(lastText(world.fake, OWNER)).toBe(`🔁 Message #${dead!.id} (voucher_code) queued again.`);
    const [again] = await database.db.select().from(messageOutbox).where(eq(messageOutbox.id, dead!.id));
    expect(again).toMatchObject({ status: "pending", attempts: 0, lastError: null, createdAt: clock.now() });
    await world.say(OWNER, `/resend #${dead!.id}`);
    expect(lastText(world.fake, OWNER)).toBe(`Message #${dead!.id} was not given up (it is pending).`);
    expect((await auditRows(database.db, "message.resent", `tg:${OWNER}`)).length).toBe(2);
  });
});

describe("/audit", () => {
  it("shows a customer's entries and an admin's, newest first, n bounded", async () => {
    const plan = await createPlan(database.db, { priceCents: 50_000 });
    const { customer } = await activeSubscriber(plan.id, "Baraka Otieno");
    await world.say(OWNER, `/pay ${customer.accountNumber} 200`);
    await world.press(OWNER, "Confirm");
    await world.say(SUPPORT, `/audit ${customer.accountNumber}`);
    const text = lastText(world.fake, SUPPORT);
    expect(text).toMatch(new RegExp(`${customer.accountNumber} · Baraka Otieno: last \\d+ audit entr`));
    expect(text).toMatch(/admin\.confirmed admin_confirmation \d+ by admin tg:5000001/);
    expect(text).toMatch(/payment\.applied|payment\.recorded|payment\./);

    await world.say(SUPPORT, `/audit ${OWNER} 2`);
    const mine = lastText(world.fake, SUPPORT);
    expect(mine).toMatch(/Telegram user 5000001: last 2 audit entries, newest first:/);
    expect(mine.split("\n")).toHaveLength(3);
    expect(mine).toMatch(/admin\.confirmed/);

    await world.say(SUPPORT, `/audit ${SUPPORT}`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/admin\.added admin 6200002 by admin tg:5000001/);

    await world.say(SUPPORT, `/audit ${customer.accountNumber} 51`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/"51" is not a number of entries from 1 to 50/);
    await world.say(SUPPORT, "/audit");
    expect(lastText(world.fake, SUPPORT)).toMatch(/Usage: \/audit/);
    await world.say(SUPPORT, "/audit ZZ99999");
    expect(lastText(world.fake, SUPPORT)).toBe("No account ZZ99999. Try /find.");
  });

  it("splits a long trail into several messages rather than cutting it", async () => {
    await auditMany(
      database.db,
      { kind: "admin", id: `tg:${OWNER}`, channel: "telegram_admin" },
      clock.now(),
      Array.from({ length: 60 }, (_, i) => ({
        action: "test.long_entry",
        entity: "customer",
        entityId: 900_000 + i,
        reason: "r".repeat(70),
        details: { note: "n".repeat(40), more: "m".repeat(40) },
      })),
    );
    const before = shownIn(world.fake, VIEWER).length;
    await world.say(VIEWER, `/audit ${OWNER} 50`);
    const shown = shownIn(world.fake, VIEWER).slice(before);
    expect(shown.length).toBeGreaterThanOrEqual(1);
    const lines = shown.flatMap((c) => String(c.payload.text).split("\n"));
    expect(lines.filter((l) => l.startsWith("  • "))).toHaveLength(50);
    for (const c of shown) expect(String(c.payload.text).length).toBeLessThanOrEqual(4096);
  });
});

describe("without a network in the instance", () => {
  it("/sync says where to reconcile instead", async () => {
    const other = await startAdminWorld(ctx);
    try {
      await other.say(OWNER, `/sync ${routerName}`);
      expect(lastText(other.fake, OWNER)).toMatch(/does not run in this instance/);
    } finally {
      await other.close();
    }
    const [row] = await database.db
      .select()
      .from(routers)
      .where(and(eq(routers.id, routerId)));
    expect(row).toBeDefined();
  });
});

describe("/resend with a large message number", () => {
  it("takes any number the database holds, and refuses one it cannot hold without changing anything", async () => {
    // A busy outbox: numbers past 999,999,999 (its ids are `integer`, up to 2,147,483,647).
    await database.db.execute(sql`alter table message_outbox alter column id restart with 2000000000`);
    const [dead] = await database.db
      .insert(messageOutbox)
      .values({
        channel: "sms",
        recipient: "+254700000778",
        template: "voucher_code",
        params: { code: "R4T8W2ZN", plan: "Day pass", validity: "2026-06-02T06:00:00.000Z" },
        status: "dead",
        attempts: 1,
        lastError: "406: the number opted out of messages from this sender",
        nextAttemptAt: clock.now(),
        createdAt: clock.now(),
      })
      .returning();
    expect(dead!.id).toBeGreaterThan(999_999_999);

    for (const typed of ["#2147483648", "#99999999999999999999", "#0"]) {
      await world.say(OWNER, `/resend ${typed}`);
      expect(lastText(world.fake, OWNER)).toBe(
        `${typed} is not a message number (they run from 1 to 2147483647). /failed lists those given up.`,
      );
    }
    const [still] = await database.db.select().from(messageOutbox).where(eq(messageOutbox.id, dead!.id));
    expect(still).toMatchObject({ status: "dead", attempts: 1 });

    await world.say(OWNER, `/resend #${dead!.id}`);
    expect(lastText(world.fake, OWNER)).toBe(`🔁 Message #${dead!.id} (voucher_code) queued again.`);
    const [again] = await database.db.select().from(messageOutbox).where(eq(messageOutbox.id, dead!.id));
    expect(again).toMatchObject({ status: "pending", attempts: 0, lastError: null });
  });
});
