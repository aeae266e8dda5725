import { describe, expect, it } from "vitest";
import { runMenu } from "../../src/menu/engine.ts";
import { subscriberScreens } from "../../src/menu/screens.ts";
import type { Language, MenuUser, PlanView, QuoteView, VoucherView } from "../../src/menu/types.ts";
import { renderUssd } from "../../src/ussd/render.ts";
import { type FakeWorld, fakeServices, longSettings } from "./fake-services.ts";

const long = (n: number, base: string) => `${base} ${"Unlimited Super Fast ".repeat(5)}`.slice(0, n);
const bigCents = 9_999_999_99;

// Data caps whose text is longest (`999.9 GB`), and none.
const caps = [999_900_000_000, null, 1_610_612_736];
const hotspot: PlanView[] = Array.from({ length: 14 }, (_, i) => ({
  id: 100 + i,
  name: long(60, `Hotspot ${i + 1} Hours`),
  nameSw: i % 2 ? long(60, `Kifurushi cha Hotspot Saa ${i + 1}`) : null,
  kind: "hotspot",
  priceCents: 99_999_00 + i,
  periodUnit: (["hours", "days", "months"] as const)[i % 3]!,
  periodCount: (i % 4) + 11,
  dataCapBytes: caps[i % 3]!,
}));
const pppoe: PlanView[] = Array.from({ length: 9 }, (_, i) => ({
  id: 200 + i,
  name: long(70, `Home Fibre ${i * 10 + 5} Mbps`),
  nameSw: i % 2 ? long(70, `Nyumbani Fibre ${i * 10 + 5} Mbps`) : null,
  kind: "pppoe",
  priceCents: 1_250_000_00 + i * 100,
  periodUnit: "months",
  periodCount: (i % 2) * 11 + 1,
  dataCapBytes: caps[i % 3]!,
}));
const farFuture = new Date("2036-12-28T12:00:00Z");

const account = (overrides: Partial<FakeWorld["account"]> = {}): NonNullable<FakeWorld["account"]> => ({
  accountNumber: "NYA-0000123456",
  subscriptionId: 1,
  status: "pending",
  plan: pppoe[0]!,
  periodEnd: farFuture,
  periodEnded: false,
  balanceCents: -bigCents,
  amountDueCents: bigCents,
  lastPayment: { amountCents: bigCents, receivedAt: new Date("2026-12-30T23:00:00Z") },
  ...overrides,
});

/** Plan-change charges and credits are whole shillings (src/billing/money.ts). */
const bigCharge = 9_999_999_00;
const quote =
  (kind: "pay" | "credit" | "refund" | "scheduled" | "nextPayment" | "free") =>
  (planId: number): QuoteView => ({
    kind: kind === "refund" || kind === "scheduled" || kind === "nextPayment" ? "downgrade" : "upgrade",
    chargeCents: kind === "pay" || kind === "credit" ? bigCharge : 0,
    creditCents: kind === "refund" ? bigCharge : 0,
    payableCents: kind === "pay" ? bigCharge : 0,
    effectiveAt: farFuture,
    immediate: kind !== "scheduled" && kind !== "nextPayment",
    withNextPayment: kind === "nextPayment",
    toPlan: pppoe.find((p) => p.id === planId) ?? pppoe[1]!,
  });

// The longest a list line gets: long plan names, a two-digit day and a time of day.
const bought: VoucherView[] = hotspot.slice(0, 5).map((plan, i) => ({
  code: `WXYZ234${i}`,
  plan,
  expiresAt: new Date(Date.UTC(2036, 11, 28, 20, 59 - i)),
}));

const customer = { id: 1, accountNumber: "NYA-0000123456", name: "Wanjiku" };
const worlds: Record<string, { world: FakeWorld; user: Omit<MenuUser, "language"> }> = {
  owing: {
    world: { account: account(), plans: [...hotspot, ...pppoe], quote: quote("pay") },
    user: { phone: "+254712345678", customer },
  },
  credit: {
    world: {
      account: account({
        status: "suspended",
        periodEnded: true,
        balanceCents: bigCents,
        amountDueCents: 0,
        lastPayment: null,
      }),
      plans: [...hotspot, ...pppoe],
      quote: quote("credit"),
    },
    user: { phone: "+254712345678", customer },
  },
  downgrade: {
    world: { account: account({ status: "active" }), plans: pppoe, quote: quote("scheduled") },
    user: { phone: "+254712345678", customer },
  },
  graceDowngrade: {
    world: { account: account({ status: "active" }), plans: pppoe, quote: quote("nextPayment") },
    user: { phone: "+254712345678", customer },
  },
  refund: {
    world: { account: account({ status: "cancelled" }), plans: pppoe, quote: quote("refund") },
    user: { phone: "+254712345678", customer },
  },
  free: {
    world: {
      account: account(),
      plans: pppoe,
      quote: quote("free"),
      refusePayment: { ok: false, reason: "rate_limited", message: "x" },
    },
    user: { phone: "+254712345678", customer },
  },
  noPlan: {
    world: {
      account: account({ plan: null, subscriptionId: null, status: null, periodEnd: null }),
      plans: [],
    },
    user: { phone: "+254712345678", customer },
  },
  stranger: { world: { plans: hotspot }, user: { phone: "+254112345678", customer: null } },
  newcomer: { world: { plans: pppoe }, user: { phone: "+254112345679", customer: null } },
  // "My voucher codes" follows five plans as `6`.
  buyer: {
    world: { plans: hotspot.slice(0, 5), vouchers: { "+254112345670": bought } },
    user: { phone: "+254112345670", customer: null },
  },
  // A chat visitor who has not shared a number: sign-up asks for it.
  noPhone: { world: { plans: pppoe }, user: { phone: "", customer: null } },
};

// The longest name a sign-up accepts (40 characters) is among the inputs.
const alphabet = [
  "1",
  "2",
  "3",
  "4",
  "5",
  "6",
  "98",
  "0",
  "00",
  "x",
  "2500",
  "12",
  "Nyokabi Wairimu-Kamau O'Neill Mwangi Ann",
];

/** Walks every screen reachable in `depth` inputs and returns each distinct rendering. */
async function explore(name: string, language: Language, depth: number) {
  const { world, user } = worlds[name]!;
  const seen = new Map<string, { text: string; screen: string; inputs: string[] }>();
  let frontier: string[][] = [[]];
  let sessionNo = 0;
  for (let d = 0; d <= depth && frontier.length; d++) {
    const next: string[][] = [];
    for (const inputs of frontier) {
      const services = fakeServices(world);
      const view = await runMenu(
        { user: { ...user, language }, session: { id: `s${sessionNo++}`, channel: "ussd" }, inputs },
        subscriberScreens,
        services,
        longSettings,
      );
      // The view as laid out, before the wire guard in renderUssd could cut anything.
      const text = `${view.end ? "END" : "CON"} ${view.lines.join("\n")}`;
      expect(renderUssd(view)).toBe(text.slice(0, 182));
      const key = `${view.screen}|${text}`;
      if (seen.has(key)) continue;
      seen.set(key, { text, screen: view.screen, inputs });
      if (!view.end) for (const a of alphabet) next.push([...inputs, a]);
    }
    frontier = next;
  }
  return [...seen.values()];
}

describe("every screen fits a USSD handset", () => {
  for (const language of ["en", "sw"] as const) {
    it(`in ${language === "en" ? "English" : "Kiswahili"}, with long names and large amounts`, async () => {
      const screens = new Set<string>();
      let count = 0;
      const all: string[] = [];
      for (const name of Object.keys(worlds)) {
        for (const { text, screen, inputs } of await explore(name, language, 5)) {
          count++;
          all.push(text);
          screens.add(screen);
          const where = `${name} ${JSON.stringify(inputs)}: ${JSON.stringify(text)}`;
          expect(text.length, where).toBeLessThanOrEqual(182);
          expect(/^(CON|END) /.test(text), where).toBe(true);
          expect(/^[\x20-\x7e\n]*$/.test(text), where).toBe(true);
        }
      }
      for (const screen of Object.keys(subscriberScreens)) expect(screens, screen).toContain(screen);
      expect(screens).toContain("outcome");
      expect(count).toBeGreaterThan(100);
      if (process.env.SHOW_SCREENS) {
        const longest = [...all].sort((a, b) => b.length - a.length).slice(0, 6);
        console.log(longest.join("\n-----\n"));
      }
    });
  }
});
