import { eq } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { recordPaymentByReference } from "../../src/billing/payments.ts";
import { selfSignUp } from "../../src/billing/self-signup.ts";
import {
  ALERTS_JOB,
  adminAlertJobs,
  DAILY_SUMMARY_JOB,
  queueAdminAlert,
} from "../../src/bots/admin/index.ts";
import { FakeClock, HOUR, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import {
  admins,
  messageOutbox,
  mpesaCallbacks,
  paymentIntents,
  provisioningOutbox,
  routers,
} from "../../src/db/schema/index.ts";
import { runJob } from "../../src/jobs/runner.ts";
import type { ScheduledJob } from "../../src/jobs/scheduler.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { RouterOsEmulator as Emulator } from "../../src/network/index.ts";
import { testRouter } from "../../src/network/routers.ts";
import { maxInboxAttempts } from "../../src/payments/mpesa/inbox-retry.ts";
import { box, emulatedRouter } from "../network/support.ts";
import { billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { ADMIN_GROUP, type AdminWorld, auditRows, OWNER, shownIn, startAdminWorld } from "./world.ts";

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
let world: AdminWorld;
let emulator: RouterOsEmulator;
let routerId: number;
// 08:00 in Nairobi (UTC+3).
const clock = new FakeClock("2026-04-01T05:00:00Z");
const TZ = "Africa/Nairobi";
let jobs: ScheduledJob[];

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  world = await startAdminWorld(ctx);
  ({ emulator, routerId } = await emulatedRouter(database.db, "Kawangware"));
  jobs = adminAlertJobs({ clock, timezone: TZ, chatIds: [ADMIN_GROUP], dailySummaryHour: 20 });
});
afterAll(async () => {
  await world?.close();
  await emulator?.stop();
  await database?.close();
});

let seen = 0;
beforeEach(() => {
  seen = shownIn(world.fake, ADMIN_GROUP).length;
});

/** Runs a job as the scheduler does, sends what it queued, and answers the new texts in the group. */
async function run(name: string): Promise<string[]> {
  const found = jobs.find((j) => j.name === name)!;
  const result = await runJob(database.db, clock, found.name, found.run);
  expect(result.status).toBe("ok");
  await world.sendQueued();
  const shown = shownIn(world.fake, ADMIN_GROUP);
  const fresh = shown.slice(seen).map((c) => String(c.payload.text));
  seen = shown.length;
  return fresh;
}

describe("alerts to the admin chat", () => {
  it("tells a router going down once, and its return once", async () => {
    expect((await testRouter(database.db, box, routerId, () => clock.now())).ok).toBe(true);
    expect(await run(ALERTS_JOB)).toEqual([]);

    clock.advance(5 * MINUTE);
    const port = emulator.port;
    await emulator.stop();
    expect((await testRouter(database.db, box, routerId, () => clock.now())).ok).toBe(false);
    const down = await run(ALERTS_JOB);
    expect(down).toHaveLength(1);
    expect(down[0]).toMatch(/🔴 Router Kawangware \(127\.0\.0\.1\) is DOWN since 1 Apr 2026 08:05/);
    expect(down[0]).toMatch(/Error: /);
    clock.advance(MINUTE);
    expect(await testRouter(database.db, box, routerId, () => clock.now())).toMatchObject({ ok: false });
    expect(await run(ALERTS_JOB)).toEqual([]);

    // It comes back (on another port, as an emulator restarts).
    emulator = await new Emulator({
      identity: "Kawangware",
      username: "tandao",
      password: "pw-Kawangware",
    }).start();
    expect(emulator.port).not.toBe(port);
    await database.db.update(routers).set({ port: emulator.port }).where(eq(routers.id, routerId));
    clock.advance(MINUTE);
    expect((await testRouter(database.db, box, routerId, () => clock.now())).ok).toBe(true);
    const up = await run(ALERTS_JOB);
    expect(up).toHaveLength(1);
    expect(up[0]).toMatch(/✅ Router Kawangware \(127\.0\.0\.1\) is back: answered at 1 Apr 2026 08:07/);
    expect(await run(ALERTS_JOB)).toEqual([]);
    const marks = await auditRows(database.db, "admin.alerted", "admin-alerts");
    expect(marks.filter((m) => m.entity === "router").map((m) => m.details.state)).toEqual(["down", "up"]);
  });

  it("groups provisioning given up per router, once", async () => {
    const now = clock.now();
    await database.db.insert(provisioningOutbox).values(
      [1, 2, 3].map((i) => ({
        routerId,
        action: "ensure_account" as const,
        status: "dead" as const,
        attempts: 8,
        lastError: `trap ${i}`,
        nextAttemptAt: now,
        createdAt: now,
        doneAt: now,
      })),
    );
    const alerts = await run(ALERTS_JOB);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatch(/⚠️ 3 router jobs given up on Kawangware:/);
    expect(alerts[0]).toMatch(/trap 1[\s\S]*trap 2[\s\S]*trap 3/);
    expect(alerts[0]).toMatch(/\/retry Kawangware/);
    expect(await run(ALERTS_JOB)).toEqual([]);
  });

  it("tells messages given up once, in one alert, a voucher code hidden; again if resent and given up again", async () => {
    const now = clock.now();
    const dead = {
      channel: "sms" as const,
      status: "dead" as const,
      attempts: 8,
      nextAttemptAt: now,
      // Written days before they were given up (an outage waited out, a /resend of an old receipt).
      createdAt: new Date(now.getTime() - 5 * 24 * HOUR),
      language: "en" as const,
    };
    const [receipt, voucher] = await database.db
      .insert(messageOutbox)
      .values([
        { ...dead, recipient: "+254711000301", template: "payment_received", lastError: "HTTP 503: down" },
        {
          ...dead,
          recipient: "+254711000302",
          template: "voucher_code",
          params: { code: "K7PX3MQA" },
          lastError: "refused: K7PX3MQA",
        },
        // Neither the admin chat's own messages nor SMS alerts to ADMIN_PHONE are told.
        {
          ...dead,
          channel: "telegram_admin" as const,
          recipient: String(ADMIN_GROUP),
          template: "admin_chat",
        },
        { ...dead, recipient: "+254700000001", template: "admin_alert", params: { text: "x" } },
      ])
      .returning({ id: messageOutbox.id });
    const alerts = await run(ALERTS_JOB);
    expect(alerts).toEqual([
      [
        "✉️ 2 messages were given up:",
        `  • #${receipt!.id} sms to +254711000301 (payment_received, 8 tries): HTTP 503: down`,
        `  • #${voucher!.id} sms to +254711000302 (voucher_code, 8 tries): refused: ********`,
        "/resend <#number> [phone] sends one again, or by SMS to another number.",
      ].join("\n"),
    ]);
    expect(await run(ALERTS_JOB)).toEqual([]);

    // Resent (/resend puts it back in the queue) and given up again.
    clock.advance(HOUR);
    await database.db
      .update(messageOutbox)
      .set({ nextAttemptAt: clock.now() })
      .where(eq(messageOutbox.id, receipt!.id));
    const again = await run(ALERTS_JOB);
    expect(again).toHaveLength(1);
    expect(again[0]).toMatch(/^✉️ A message was given up:\n {2}• #\d+ sms to \+254711000301/);
  });

  it("tells each unmatched payment and each self sign-up once", async () => {
    await recordPaymentByReference(
      ctx,
      { kind: "webhook", id: "mpesa" },
      {
        method: "mpesa_c2b",
        provider: "mpesa",
        providerRef: "SAL3RT0001",
        amountCents: 150_000,
        reference: "NOSUCH1",
        payerName: "JANE DOE",
      },
    );
    const plan = await createPlan(database.db, { priceCents: 200_000, name: "Home 10" });
    const signed = await selfSignUp(ctx, job, {
      phone: uniquePhone(),
      name: "Neema Achieng",
      planId: plan.id,
      language: "sw",
      area: { name: "Kawangware", routerId },
      channel: "ussd",
      sessionId: "s-1",
    });
    expect(signed.ok).toBe(true);
    const alerts = await run(ALERTS_JOB);
    expect(alerts).toHaveLength(2);
    expect(alerts[0]).toMatch(
      /💰 Unmatched payment SAL3RT0001: KES 1,500(\.00)? received .* from JANE DOE, account typed "NOSUCH1"/,
    );
    expect(alerts[0]).toMatch(/\/assign SAL3RT0001 <account>/);
    expect(alerts[1]).toMatch(/🆕 New sign-up: Neema Achieng \(TD\d+\), .*plan Home 10, area Kawangware/);
    expect(await run(ALERTS_JOB)).toEqual([]);
  });

  it("tells each M-Pesa request that could not be recorded once: failing past its quick tries, or kept unread", async () => {
    // As the inbox leaves them (src/payments/inbox.ts, process.ts).
    const at = clock.now();
    const [gaveUp] = await database.db
      .insert(mpesaCallbacks)
      .values([
        {
          kind: "c2b_confirmation",
          raw: '{"TransID":"SFA1LED001"}',
          status: "failed",
          attempts: maxInboxAttempts,
          error: "53300: too many connections",
          receivedAt: at,
        },
        { kind: "stk", raw: "{}", status: "failed", attempts: 2, error: "still trying", receivedAt: at },
        // At its last quick try right now: told only if that try fails too.
        {
          kind: "stk",
          raw: "{}",
          status: "failed",
          attempts: maxInboxAttempts,
          retryLeaseUntil: new Date(at.getTime() + 60 * MINUTE),
          receivedAt: at,
        },
        {
          kind: "c2b_confirmation",
          reference: "SBIG000001",
          body: {},
          status: "processed",
          flag: "amount_out_of_range",
          receivedAt: at,
          processedAt: at,
        },
        {
          kind: "c2b_confirmation",
          reference: "SOK0000001",
          body: {},
          status: "processed",
          flag: "unmatched",
          receivedAt: at,
          processedAt: at,
        },
      ])
      .returning({ id: mpesaCallbacks.id });
    const alerts = await run(ALERTS_JOB);
    expect(alerts).toHaveLength(2);
    expect(alerts[0]).toMatch(
      new RegExp(
        `⚠️ M-Pesa paybill confirmation #${gaveUp!.id}, received 1 Apr 2026 .*, could not be processed: 10 tries so far`,
      ),
    );
    expect(alerts[0]).toMatch(/Error: 53300: too many connections/);
    expect(alerts[0]).toMatch(/tried again every hour/);
    expect(alerts[1]).toMatch(
      /M-Pesa paybill confirmation #\d+ \(SBIG000001\).*its amount is outside what M-Pesa allows/,
    );
    expect(await run(ALERTS_JOB)).toEqual([]);
  });

  it("tells each payment prompt M-Pesa never answered for once, unless it was paid since", async () => {
    // As the recovery job leaves them (src/payments/mpesa/recovery.ts): timed out, asked for a day.
    const at = clock.now();
    const sentAt = new Date("2026-03-31T04:50:00Z");
    const prompt = {
      phone: "+254711000222",
      purpose: "balance" as const,
      amountCents: 150_000,
      channel: "ussd",
      accountReference: "TD00042",
      sentAt,
      unresolvedAt: at,
      updatedAt: at,
    };
    const [unanswered] = await database.db
      .insert(paymentIntents)
      .values([
        { ...prompt, status: "timed_out", checkoutRequestId: "ws_CO_unanswered1" },
        // Its callback came at last: it is paid, nothing to tell.
        { ...prompt, status: "succeeded", checkoutRequestId: "ws_CO_unanswered2" },
      ])
      .returning({ id: paymentIntents.id });
    const alerts = await run(ALERTS_JOB);
    expect(alerts).toEqual([
      `⚠️ M-Pesa never said whether payment prompt #${unanswered!.id} was paid: KES 1,500 from +254711000222, sent 31 Mar 2026 07:50, account shown "TD00042".\n` +
        `Its callback never came and M-Pesa's status query gave no answer for a day. Nothing was credited: if M-Pesa's statement shows the payment, credit it with its receipt: /prompt_paid #${unanswered!.id} <receipt>.`,
    ]);
    expect(await run(ALERTS_JOB)).toEqual([]);
  });

  it("sends the daily summary once a day, at or after the configured hour (ISP time)", async () => {
    // 08:07 Nairobi: not yet.
    expect(await run(DAILY_SUMMARY_JOB)).toEqual([]);
    clock.set(new Date("2026-04-01T17:00:00Z")); // 20:00 in Nairobi
    const [summary, ...more] = await run(DAILY_SUMMARY_JOB);
    expect(more).toEqual([]);
    expect(summary).toMatch(/📊 Daily summary, 2026-04-01/);
    expect(summary).toMatch(/Routers: 1 up/);
    expect(summary).toMatch(/Subscribers: 0 active, 0 suspended, 1 not paid yet/);
    expect(summary).toMatch(/Collected today: KES 0/);
    expect(summary).toMatch(/New sign-ups today: 1/);
    expect(summary).toMatch(/Unmatched payments waiting: 1/);
    expect(summary).toMatch(/Given up in 24 h: 3 router jobs/);
    clock.advance(HOUR);
    expect(await run(DAILY_SUMMARY_JOB)).toEqual([]);
    // 00:30 the next day: before the hour; 20:00 that day: the next summary.
    clock.set(new Date("2026-04-01T21:30:00Z"));
    expect(await run(DAILY_SUMMARY_JOB)).toEqual([]);
    clock.set(new Date("2026-04-02T17:00:00Z"));
    const [next] = await run(DAILY_SUMMARY_JOB);
    expect(next).toMatch(/Daily summary, 2026-04-02/);
  });

  it("goes to the owners' private chats when no admin chat is configured; a key queues it once", async () => {
    const second = 5_000_777;
    await database.db.insert(admins).values({ telegramId: second, role: "owner", name: "Co-owner" });
    await database.db.transaction(async (tx) => {
      expect(
        await queueAdminAlert(tx, clock.now(), "WhatsApp needs a new login QR", { key: "wa-qr:1" }),
      ).toBe(2);
      expect(
        await queueAdminAlert(tx, clock.now(), "WhatsApp needs a new login QR", { key: "wa-qr:1" }),
      ).toBe(0);
    });
    await world.sendQueued();
    for (const owner of [OWNER, second])
      expect(shownIn(world.fake, owner).map((c) => c.payload.text)).toContain(
        "WhatsApp needs a new login QR",
      );
    expect(() => adminAlertJobs({ clock, timezone: TZ, dailySummaryHour: 24 })).toThrow(/0 to 23/);
  });
});
