import { describe, expect, it } from "vitest";
import { runMenu } from "../../src/menu/engine.ts";
import { subscriberScreens } from "../../src/menu/screens.ts";
import type { PlanView } from "../../src/menu/types.ts";
import { settings } from "../ussd/world.ts";
import { fakeServices } from "./fake-services.ts";

/**
 * Names like Ng'ang'a, Ong'ondo or Ng'endo are common in Kenya, and phone keyboards type the
 * apostrophe as U+2019 in Telegram and WhatsApp: the name is taken as if typed with a plain one.
 */
const plan: PlanView = {
  id: 7,
  name: "Home 10",
  nameSw: null,
  kind: "pppoe",
  priceCents: 250_000,
  periodUnit: "months",
  periodCount: 1,
  dataCapBytes: null,
};

describe("a name typed with a typographic apostrophe", () => {
  it("is accepted like the same name with ASCII '", async () => {
    const services = fakeServices({ plans: [plan] });
    const view = await runMenu(
      {
        user: { phone: "+254712000111", language: "en", customer: null },
        session: { id: "chat:apostrophe", channel: "telegram" },
        inputs: ["2", "1", "Peter Ng\u2019ang\u2019a"],
      },
      subscriberScreens,
      services,
      { ...settings, signupAreas: [{ name: "Kahawa West", routerId: null }] },
    );
    expect(view.screen).toBe("signupArea");
  });
});
