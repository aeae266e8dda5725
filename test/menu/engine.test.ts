import { describe, expect, it } from "vitest";
import { runMenu } from "../../src/menu/engine.ts";
import { subscriberScreens } from "../../src/menu/screens.ts";
import type { MenuUser, PlanView } from "../../src/menu/types.ts";
import { fakeServices, longSettings } from "./fake-services.ts";

const home20: PlanView = {
  id: 7,
  name: "Home 20",
  nameSw: null,
  kind: "pppoe",
  priceCents: 2_500_00,
  periodUnit: "months",
  periodCount: 1,
  dataCapBytes: null,
};
const user: MenuUser = {
  phone: "+254712345678",
  language: "en",
  customer: { id: 1, accountNumber: "TD00001", name: "Wanjiku" },
};
const world = () =>
  fakeServices({
    plans: [home20],
    account: {
      accountNumber: "TD00001",
      subscriptionId: 1,
      status: "active",
      plan: home20,
      periodEnd: new Date("2026-12-01T00:00:00Z"),
      periodEnded: false,
      balanceCents: -2_500_00,
      amountDueCents: 2_500_00,
      lastPayment: null,
    },
  });
const session = { id: "ussd:ATUid_engine", channel: "ussd" };
const walk = (services: ReturnType<typeof world>, inputs: string[]) =>
  runMenu({ user, session, inputs }, subscriberScreens, services, longSettings);

describe("confirmations that are exactly-once by their own key", () => {
  it("pay with the session and step as the key, and only when the confirm is the newest input", async () => {
    const services = world();
    const paid = await walk(services, ["2", "1"]);
    expect(paid).toMatchObject({ end: true, screen: "outcome" });
    expect(services.actions).toEqual(["pay:balance:250000::ussd:ATUid_engine#2"]);
    // Input after the ended conversation replays the confirm without paying again.
    const after = await walk(services, ["2", "1", "1"]);
    expect(after).toMatchObject({ end: true, screen: "unconfirmed" });
    expect(services.actions).toHaveLength(1);
    // The same confirmation later in the conversation is another step, so another key.
    await walk(services, ["1", "0", "2", "1"]);
    expect(services.actions.at(-1)).toBe("pay:balance:250000::ussd:ATUid_engine#4");
  });

  it("change the language once and go on from the main menu when the confirm is replayed", async () => {
    const services = world();
    const saved = await walk(services, ["5", "2", "1"]);
    expect(services.actions).toEqual(["language:sw"]);
    expect(saved.screen).toBe("home");
    expect(saved.lines[0]).toMatch(/Kiswahili/);
    const next = await walk(services, ["5", "2", "1", "6"]);
    expect(next.screen).toBe("help");
    expect(services.actions).toEqual(["language:sw"]);
  });
});
