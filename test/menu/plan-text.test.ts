import { getCountries } from "libphonenumber-js";
import { describe, expect, it } from "vitest";
import { runMenu } from "../../src/menu/engine.ts";
import { notServedView } from "../../src/menu/not-served.ts";
import { formatData, statesData, statesPeriod } from "../../src/menu/plan-text.ts";
import { subscriberScreens } from "../../src/menu/screens.ts";
import type { AccountView, Language, PlanView } from "../../src/menu/types.ts";
import { renderUssd } from "../../src/ussd/render.ts";
import { fakeServices, longSettings } from "./fake-services.ts";

const plan = (values: Partial<PlanView> & Pick<PlanView, "id" | "name">): PlanView => ({
  nameSw: null,
  kind: "hotspot",
  priceCents: 2_000,
  periodUnit: "hours",
  periodCount: 1,
  dataCapBytes: null,
  ...values,
});

describe("a plan's name is not followed by what it already says", () => {
  it.each([
    ["Hotspot 1 hour", "hours", 1, true],
    ["Hotspot 1hr", "hours", 1, true],
    ["Hotspot 24 Hours", "hours", 24, true],
    ["Daily Pass", "hours", 24, true],
    ["Saa 3 Hotspot", "hours", 3, true],
    ["Siku 7", "days", 7, true],
    ["Week Bundle", "days", 7, true],
    ["Home 10M", "months", 1, false],
    ["Home Monthly", "months", 1, true],
    ["Mwezi Mmoja", "months", 1, true],
    ["Hotspot 24 Hours", "hours", 4, false],
    ["Hotspot 1 hour", "hours", 2, false],
    ["Home 30 Mbps", "days", 30, false],
  ] as const)("%s, %s x %d: %s", (name, periodUnit, periodCount, states) => {
    expect(statesPeriod(name, { periodUnit, periodCount })).toBe(states);
  });

  it("reads data caps as people write them, and does not mistake a speed for one", () => {
    expect(formatData(10 * 1024 ** 3)).toBe("10 GB");
    expect(formatData(2_000_000_000)).toBe("2 GB");
    expect(formatData(1.5 * 1024 ** 3)).toBe("1.5 GB");
    expect(formatData(500_000_000)).toBe("500 MB");
    expect(statesData("Bundle 10GB", "10 GB")).toBe(true);
    expect(statesData("Bundle 10 gb", "10 GB")).toBe(true);
    expect(statesData("Bundle 110GB", "10 GB")).toBe(false);
    expect(statesData("Home 500 Mbps", "500 MB")).toBe(false);
  });
});

const settings = { ...longSettings, isp: "Kibera Net", support: "0700 123 456" };
const user = (language: Language, customer = true) => ({
  phone: "+254712345678",
  language,
  customer: customer ? { id: 1, accountNumber: "TD00001", name: "Wanjiku" } : null,
});
async function show(
  inputs: string[],
  language: Language,
  world: Parameters<typeof fakeServices>[0],
  customer = true,
) {
  const view = await runMenu(
    { user: user(language, customer), session: { id: `s-${inputs.join("*")}`, channel: "ussd" }, inputs },
    subscriberScreens,
    fakeServices(world),
    settings,
  );
  return view.lines.join("\n");
}

describe("plan screens", () => {
  const hour = plan({ id: 1, name: "Hotspot 1 hour", nameSw: "Hotspot saa 1" });
  const week = plan({
    id: 2,
    name: "Week Pass",
    priceCents: 25_000,
    periodUnit: "days",
    periodCount: 7,
    dataCapBytes: 10 * 1024 ** 3,
  });
  const world = { plans: [hour, week] };

  it("never repeat themselves, and show the period and data cap the name does not", async () => {
    expect(await show(["1"], "en", world, false)).toBe(
      "Choose a hotspot voucher:\n1. Hotspot 1 hour: KES 20\n2. Week Pass: KES 250, 10 GB data\n3. My voucher codes\n0. Back",
    );
    expect(await show(["1", "1"], "en", world, false)).toBe(
      "Hotspot 1 hour: KES 20\nBuy this voucher with M-Pesa 0712 345678?\n1. Confirm\n0. Back 00. Home",
    );
    expect(await show(["1"], "sw", world, false)).toBe(
      "Chagua vocha ya hotspot:\n1. Hotspot saa 1: KES 20\n2. Week Pass: KES 250, data 10 GB\n3. Vocha zangu\n0. Rudi",
    );
  });

  it("show a PPPoE plan's price per period and cap in the plan list and on the quote", async () => {
    const home: PlanView = plan({
      id: 10,
      name: "Home 10",
      kind: "pppoe",
      priceCents: 250_000,
      periodUnit: "months",
    });
    const fast: PlanView = plan({
      id: 11,
      name: "Fast 20",
      nameSw: "Kasi 20",
      kind: "pppoe",
      priceCents: 400_000,
      periodUnit: "months",
      dataCapBytes: 500 * 1024 ** 3,
    });
    const account: AccountView = {
      accountNumber: "TD00001",
      subscriptionId: 5,
      status: "active",
      plan: home,
      periodEnd: new Date("2026-07-01T00:00:00Z"),
      periodEnded: false,
      balanceCents: 0,
      amountDueCents: 0,
      lastPayment: null,
    };
    const quote = () => ({
      kind: "upgrade" as const,
      chargeCents: 75_000,
      creditCents: 0,
      payableCents: 75_000,
      effectiveAt: new Date("2026-06-15T00:00:00Z"),
      immediate: true,
      withNextPayment: false,
      toPlan: fast,
    });
    const w = { account, plans: [home, fast], quote };
    expect(await show(["4"], "en", w)).toBe(
      "Now on Home 10. Choose a new plan:\n1. Fast 20: KES 4,000 for 1 month, 500 GB data\n0. Back",
    );
    expect(await show(["4", "1"], "en", w)).toBe(
      "Fast 20: KES 4,000 for 1 month, 500 GB data\nChange now. Pay KES 750 for the rest of this period.\n1. Confirm\n0. Back 00. Home",
    );
    expect(await show(["4", "1"], "sw", w)).toBe(
      "Kasi 20: KES 4,000 kwa mwezi 1, data 500 GB\nBadilisha sasa, lipa KES 750 kwa muda uliobaki.\n1. Thibitisha\n0. Rudi 00. Mwanzo",
    );
  });

  it("show no end date before the first payment, and say 'expired' once it has passed", async () => {
    const home = plan({ id: 10, name: "Home 10", kind: "pppoe", periodUnit: "months" });
    const base: AccountView = {
      accountNumber: "TD00001",
      subscriptionId: 5,
      status: "pending",
      plan: home,
      periodEnd: null,
      periodEnded: false,
      balanceCents: -250_000,
      amountDueCents: 250_000,
      lastPayment: null,
    };
    expect(await show(["1"], "en", { account: base, plans: [] })).toBe(
      "Plan: Home 10\nStatus: Awaiting first payment\nAmount due: KES 2,500\nNo payment yet\n0. Back",
    );
    expect(await show(["1"], "sw", { account: base, plans: [] })).toBe(
      "Kifurushi: Home 10\nHali: Inasubiri malipo ya kwanza\nDeni: KES 2,500\nBado hakuna malipo\n0. Rudi",
    );
    const lapsed = {
      ...base,
      status: "suspended" as const,
      periodEnd: new Date("2026-05-01T09:00:00Z"),
      periodEnded: true,
    };
    expect(await show(["1"], "en", { account: lapsed, plans: [] })).toContain(
      "Status: Suspended\nExpired: 1 May 2026\n",
    );
    expect(await show(["1"], "sw", { account: lapsed, plans: [] })).toContain(
      "Hali: Imesimamishwa\nKiliisha: 1 Mei 2026\n",
    );
  });
});

describe("the answer to a number from a country that is not served", () => {
  it("fits a handset for every country, in both languages when they fit", () => {
    for (const country of [...getCountries(), null]) {
      const text = renderUssd(notServedView(longSettings, country));
      const view = notServedView(longSettings, country);
      expect(`END ${view.lines.join("\n")}`, String(country)).toBe(text);
      expect(/^[\x20-\x7e\n]*$/.test(text), String(country)).toBe(true);
    }
    expect(notServedView(settings, "UG").lines).toEqual([
      "Sorry, Kibera Net does not serve phone numbers from Uganda.",
      "Samahani, Kibera Net haihudumii nambari za simu za Uganda.",
    ]);
  });
});
