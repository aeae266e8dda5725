import { sql } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { FakeClock } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import { normalizePhone } from "../../src/lib/phone.ts";
import { runMenu } from "../../src/menu/engine.ts";
import { subscriberScreens } from "../../src/menu/screens.ts";
import { createMenuServices, loadMenuUser } from "../../src/menu/services.ts";
import type { MenuServices, MenuSettings } from "../../src/menu/types.ts";
import { activeSubscriber, admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { settings, startUssdWorld, type UssdWorld } from "./world.ts";

let database: Database;
let world: UssdWorld;
let readOnly: MenuServices;
const phones: string[] = [];
const clock = new FakeClock("2026-05-01T06:00:00Z");

/**
 * Sign-up is offered, so the visitor's walks reach it too, but a confirmed sign-up is refused (the
 * server's sign-up service says so): the visitor stays a visitor, so the walks replayed afresh by
 * `screenBefore` mean what they meant to the server (test/ussd/signup.test.ts signs up).
 */
const fuzzSettings: MenuSettings = {
  ...settings,
  signupAreas: [{ name: "Kahawa West", routerId: null }],
};
const signUpRefused = async () => ({ ok: false as const, reason: "closed", message: "sign-up closed" });

/** Screens on which typing `1` is the confirmation of an action. */
const confirmScreens = new Set([
  "pay",
  "payConfirm",
  "voucherConfirm",
  "planConfirm",
  "languageConfirm",
  "signupConfirm",
]);

beforeAll(async () => {
  database = await createTestDatabase();
  const { ctx } = billingContext(database.db, clock);
  world = await startUssdWorld(ctx, database.db, {
    settings: fuzzSettings,
    services: { signUp: signUpRefused },
  });
  // What the screen before the newest input was, worked out without acting on anything.
  readOnly = {
    ...createMenuServices(ctx),
    claimEffect: async () => "pending",
    recordEffect: async () => {},
    requestPayment: async () => ({ ok: false, reason: "rate_limited", message: "read only" }),
    setLanguage: async () => {},
    changePlan: async () => ({ ok: false, reason: "read_only", message: "read only" }),
    signUp: async () => ({ ok: false, reason: "read_only", message: "read only" }),
  };
  const small = await createPlan(database.db, { name: "Small", priceCents: 100_000 });
  await createPlan(database.db, { name: "Large", priceCents: 300_000 });
  await createPlan(database.db, {
    name: "2 Hours",
    kind: "hotspot",
    priceCents: 3_000,
    periodUnit: "hours",
    periodCount: 2,
  });
  const owing = await createCustomerWithSubscription(ctx, admin, {
    name: "Owing",
    phone: uniquePhone(),
    planId: small.id,
  });
  const { customer: paid } = await activeSubscriber(ctx, small.id);
  phones.push(owing.customer.phone, paid.phone, uniquePhone());
});
afterAll(async () => {
  await world?.close();
  await database.close();
});

/**
 * Everything a subscriber's action could change. A session keeping the plan lists it was shown (so
 * that its numbers keep their meaning) is not one: it only records what was on screen.
 */
async function snapshot(): Promise<string> {
  const [row] = await queryRows(
    database.db,
    sql`select (select count(*) from payment_intents)::int as intents,
               (select string_agg(language, ',' order by id) from customers) as languages,
               (select string_agg(plan_id || ':' || coalesce(next_plan_id, 0), ',' order by id) from subscriptions) as plans,
               (select count(*) from channel_sessions where state - 'plans' <> '{}'::jsonb or language is not null)::int as sessions,
               (select count(*) from ledger_entries)::int as ledger,
               (select count(*) from message_outbox)::int as messages,
               (select count(*) from audit_log)::int as audited,
               (select count(*) from idempotency_keys)::int as keys,
               (select coalesce(sum(cardinality(hits)), 0) from rate_limit_windows)::int as prompt_slots`,
  );
  return JSON.stringify(row);
}

async function screenBefore(phone: string, sessionId: string, inputs: string[]): Promise<string> {
  const { user, recorded } = await loadMenuUser(database.db, phone, `ussd:${sessionId}`);
  const view = await runMenu(
    { user, session: { id: `ussd:${sessionId}`, channel: "ussd" }, inputs: inputs.slice(0, -1), recorded },
    subscriberScreens,
    readOnly,
    fuzzSettings,
  );
  return view.screen;
}

const token = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom("1", "2", "3", "4", "5", "6", "0", "00", "98", "1", "1") },
  { weight: 1, arbitrary: fc.constantFrom("", "x", "500", "99999999", " 1 ", "#", "1,000", "-5") },
  { weight: 1, arbitrary: fc.string({ maxLength: 6 }) },
);

/** Paths that reach a confirmation, so that random suffixes and prefixes around them get exercised. */
const flows = [
  ["2", "1"],
  ["2", "2", "500", "1"],
  ["3", "1", "1"],
  ["4", "1", "1"],
  ["5", "2", "1"],
  ["5", "1", "1"],
  ["1", "1", "1"],
  ["3", "2", "1"],
  ["2", "1", "Amina Wekesa", "1", "1"],
];
const walk = fc.oneof(
  fc.array(token, { minLength: 0, maxLength: 7 }),
  fc
    .tuple(fc.array(token, { maxLength: 2 }), fc.constantFrom(...flows), fc.array(token, { maxLength: 2 }))
    .map(([before, flow, after]) => [...before, ...flow, ...after]),
);

describe("random USSD input", () => {
  it("never answers 5xx, always fits a handset, and changes state only on a confirm", async () => {
    let changes = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2 }),
        fc.integer({ min: 1, max: 40 }),
        walk,
        async (who, session, tokens) => {
          const phone = phones[who]!;
          const sessionId = `fuzz-${who}-${session}`;
          const text = tokens.join("*");
          const inputs = text === "" ? [] : text.split("*");
          const before = await snapshot();
          const previous = inputs.length ? await screenBefore(phone, sessionId, inputs) : "dial";
          const answer = await world.post({ sessionId, phoneNumber: phone, text, serviceCode: "*384*1#" });
          expect(answer.status).toBe(200);
          expect(answer.text).toMatch(/^(CON|END) /);
          expect(answer.text.length).toBeLessThanOrEqual(182);
          expect(/^[\x20-\x7e\n]*$/.test(answer.text)).toBe(true);
          if ((await snapshot()) !== before) {
            changes++;
            expect(inputs.at(-1)?.trim(), `${text} changed state from ${previous}`).toBe("1");
            expect(confirmScreens.has(previous), `${text} changed state from ${previous}`).toBe(true);
          }
        },
      ),
      { numRuns: 250, seed: 20261125 },
    );
    if (process.env.SHOW_FUZZ) console.log("state changes", changes);
    // The walk does reach confirmations, so the property above was put to the test.
    expect(changes).toBeGreaterThan(0);
  });

  it("answers malformed posts cleanly", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(
          fc.constantFrom("sessionId", "phoneNumber", "text", "serviceCode", "networkCode", "junk"),
          fc.oneof(fc.string({ maxLength: 40 }), fc.constantFrom("+254712345678", "0712345678", "", "1*2*3")),
        ),
        fc.constantFrom(
          "application/x-www-form-urlencoded",
          "application/json",
          "text/plain",
          "multipart/form-data; boundary=x",
          "",
        ),
        fc.string({ maxLength: 200 }),
        async (fields, contentType, raw) => {
          const body = contentType.startsWith("application/x-www")
            ? new URLSearchParams(fields).toString()
            : raw;
          const response = await fetch(`${world.baseUrl}/ussd`, {
            method: "POST",
            headers: contentType ? { "content-type": contentType } : {},
            body,
          });
          const text = await response.text();
          expect(response.status).toBe(200);
          expect(text).toMatch(/^(CON|END) /);
          const phone = typeof fields.phoneNumber === "string" ? normalizePhone(fields.phoneNumber) : null;
          if (!fields.sessionId?.trim() || !phone || !contentType.startsWith("application/x-www")) {
            expect(text).toMatch(/^END /);
          }
        },
      ),
      { numRuns: 150, seed: 7 },
    );
  });
});
