import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { vouchers } from "../../src/db/schema/index.ts";
import { driveUntil, eventually } from "../payments/dispatch-support.ts";
import { freshPhone, type Harness, intent, startHarness } from "../payments/harness.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { hotspotPlans, pageKey, portalApp, postJson, routerRow } from "./world.ts";

let database: Database;
let plans: Awaited<ReturnType<typeof hotspotPlans>>;
let h: Harness;
const clock = new FakeClock(new Date());
let ctx: ReturnType<typeof billingContext>["ctx"];
beforeAll(async () => {
  database = await createTestDatabase();
  plans = await hotspotPlans(database.db);
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx);
});
afterAll(async () => {
  await h?.close();
  await database.close();
});

describe("a portal purchase whose first prompt may still be paid", () => {
  it("does not tell the buyer 'Nothing was paid' while an earlier prompt of the same purchase can still be (and is) paid", async () => {
    const router = await routerRow(database.db);
    const app = portalApp(ctx);
    const phone = freshPhone();
    const { token, intentId } = (await (
      await postJson(app, `/portal/${router.name}/pay`, { plan: plans.hour.id, phone, key: pageKey() })
    ).json()) as { token: string; intentId: number };

    // First push reaches the phone but its HTTP answer is lost; the payer pays it, and M-Pesa's
    // callback for it comes late. The dispatcher's retry prompts again once the phone is free, and
    // the payer cancels that second prompt.
    h.fake.queue({ outcome: "success", delayMs: 150, answer: "reset", lateByMs: 1500 });
    h.fake.queue({ outcome: "cancelled", delayMs: 10 });
    await h.dispatcher.runOnce();
    expect((await intent(database.db, intentId)).pushUncertain).toBe(true);
    await driveUntil(
      h.dispatcher,
      clock,
      async () => (await intent(database.db, intentId)).status !== "pending",
    );

    const shown = (await (await app.request(`/portal/${router.name}/status/${token}`)).json()) as {
      state: string;
      message: string;
    };

    // The first prompt was paid: its late callback sells the voucher (money left the buyer's account).
    const voucher = await eventually(async () => {
      const [v] = await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone));
      return v;
    });
    expect(voucher).toBeDefined();

    // While that payment was on its way, the page could not say nothing was paid.
    expect(shown).toEqual({
      state: "timed_out",
      message:
        "M-Pesa could not confirm this payment. If money left your account, your code will come by SMS.",
    });
  });
});
