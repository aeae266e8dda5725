import { and, asc, eq, gt, max } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settleStkResult } from "../../src/billing/intents/settle.ts";
import { formatKes } from "../../src/billing/money.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { customers, messageOutbox, paymentIntents } from "../../src/db/schema/index.ts";
import { runMenu } from "../../src/menu/engine.ts";
import { subscriberScreens } from "../../src/menu/screens.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import type { MenuServices, MenuSettings } from "../../src/menu/types.ts";
import { type Language, renderSms } from "../../src/messaging/render.ts";
import { activeSubscriber, admin, billingContext, createPlan, ledgerSum } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

/**
 * The rounding rule of src/billing/money.ts, end to end: what the plan-change screen quotes is what
 * M-Pesa is asked, what is paid, what the SMS says was charged, and what the receipt's balance less
 * that charge leaves on the account. No message shows a cent the subscriber did not already have.
 */

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const settings: MenuSettings = {
  isp: "Kibera Net",
  support: "0700 123 456",
  timezone: "Africa/Nairobi",
  minPayCents: 1_000,
  maxPayCents: 150_000_00,
};
const quotePatterns: Record<Language, { pay: RegExp; fromBalance: RegExp; free: RegExp }> = {
  en: {
    pay: /\nChange now\. Pay KES ([\d,]+) for the rest of this period\.\n/,
    fromBalance: /\nChange now\. KES ([\d,]+) is taken from your balance\.\n/,
    free: /\nChange now at no charge\.\n/,
  },
  sw: {
    pay: /\nBadilisha sasa, lipa KES ([\d,]+) kwa muda uliobaki\.\n/,
    fromBalance: /\nBadilisha sasa\. KES ([\d,]+) itatolewa kwenye salio lako\.\n/,
    free: /\nBadilisha sasa bila malipo\.\n/,
  },
};
const cents = (shown: string) => Number(shown.replace(/,/g, "")) * 100;

let run = 0;

describe("an upgrade's quote, M-Pesa amount, charge and receipt", () => {
  it("agree in whole shillings whatever the prices, the time left and the credit on the account", async () => {
    const clock = new FakeClock("2026-05-01T06:00:00Z");
    const { ctx } = billingContext(database.db, clock);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 10_000, max: 1_000_000 }),
        fc.integer({ min: 1, max: 2_000_000 }),
        fc.integer({ min: 0, max: 29 * DAY }),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3_000_000 })),
        fc.constantFrom<Language>("en", "sw"),
        async (fromPrice, more, elapsed, creditCents, language) => {
          run++;
          clock.set("2026-05-01T06:00:00Z");
          const from = await createPlan(database.db, {
            priceCents: fromPrice,
            periodUnit: "days",
            periodCount: 30,
          });
          const to = await createPlan(database.db, {
            name: `Up ${run}`,
            priceCents: fromPrice + more,
            periodUnit: "days",
            periodCount: 30,
          });
          const { customer } = await activeSubscriber(ctx, from.id);
          await database.db.update(customers).set({ language }).where(eq(customers.id, customer.id));
          if (creditCents > 0) {
            await applyPayment(ctx, admin, {
              customerId: customer.id,
              method: "cash",
              provider: "cash",
              providerRef: `credit-${customer.id}`,
              amountCents: creditCents,
            });
          }
          const [last] = await database.db.select({ id: max(messageOutbox.id) }).from(messageOutbox);
          const before = await ledgerSum(database.db, customer.id);
          clock.advance(elapsed);

          // The menu as the subscriber sees it, with the two plans on the list.
          const real = createMenuServices(ctx, { planCacheMs: 0 });
          const services: MenuServices = {
            ...real,
            plans: async (kind) => (await real.plans(kind)).filter((p) => p.id === to.id),
          };
          const user = {
            phone: customer.phone,
            language,
            customer: { id: customer.id, accountNumber: customer.accountNumber, name: customer.name },
          };
          const session = { id: `ussd:upgrade-${run}`, channel: "ussd" };
          const walk = (inputs: string[]) =>
            runMenu({ user, session, inputs }, subscriberScreens, services, settings);
          const screen = (await walk(["4", "1"])).lines.join("\n");
          const patterns = quotePatterns[language];
          const toPay = patterns.pay.exec(screen)?.[1];
          const fromBalance = patterns.fromBalance.exec(screen)?.[1];
          expect(
            toPay ?? fromBalance ?? (patterns.free.test(screen) ? "0" : undefined),
            screen,
          ).toBeDefined();
          await walk(["4", "1", "1"]);

          if (toPay) {
            const [intent] = await database.db
              .select()
              .from(paymentIntents)
              .where(eq(paymentIntents.channelSessionId, session.id));
            expect(intent!.amountCents).toBe(cents(toPay));
            await database.db
              .update(paymentIntents)
              .set({ checkoutRequestId: `ws_CO_up_${run}` })
              .where(eq(paymentIntents.id, intent!.id));
            const settled = await settleStkResult(ctx, admin, {
              checkoutRequestId: `ws_CO_up_${run}`,
              outcome: "paid",
              reason: "The service request is processed successfully.",
              receipt: `UPG${String(run).padStart(7, "0")}`,
              amountCents: intent!.amountCents,
              phone: customer.phone,
              source: "callback",
            });
            expect(settled.status).toBe("credited");
          }

          const sent = await database.db
            .select()
            .from(messageOutbox)
            .where(and(eq(messageOutbox.recipient, customer.phone), gt(messageOutbox.id, last?.id ?? 0)))
            .orderBy(asc(messageOutbox.id));
          const texts = sent.map(
            (m) => renderSms(m.language as Language, m.template, m.params, { isp: "X" })!,
          );
          const after = await ledgerSum(database.db, customer.id);
          const changed = sent.at(-1)!;
          expect(changed.template).toBe("plan_changed");
          const charge = Number(changed.params.chargeCents);
          if (toPay) {
            // Receipt first, then the change; quote = M-Pesa amount = paid = charged.
            expect(sent.map((m) => m.template)).toEqual(["payment_received", "plan_changed"]);
            expect(charge).toBe(cents(toPay));
            expect(Number(sent[0]!.params.amountCents)).toBe(cents(toPay));
            expect(texts[0]).toContain(formatKes(cents(toPay)));
            expect(Number(sent[0]!.params.balanceCents) - charge).toBe(after);
            expect(after).toBe(before);
          } else {
            expect(sent.map((m) => m.template)).toEqual(["plan_changed"]);
            expect(charge).toBe(fromBalance ? cents(fromBalance) : 0);
            expect(after).toBe(before - charge);
          }
          expect(texts.at(-1)).toContain(`${formatKes(charge)} `);
          expect(charge % 100).toBe(0);
          // No message shows a cent the account did not already hold.
          for (const text of texts) {
            for (const [, fraction] of text.matchAll(/KES [\d,]+\.(\d\d)/g)) {
              expect(Number(fraction)).toBe(((before % 100) + 100) % 100);
            }
          }
        },
      ),
      { numRuns: 12, seed: 20260501 },
    );
  });
});
