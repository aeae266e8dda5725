import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { runMenu } from "../../src/menu/engine.ts";
import { subscriberScreens } from "../../src/menu/screens.ts";
import type { PlanView } from "../../src/menu/types.ts";
import { settings } from "../ussd/world.ts";
import { fakeServices } from "./fake-services.ts";

/**
 * What a newcomer types and picks at sign-up. Estates often differ only at the end of their names
 * ("Kahawa Wendani Phase 1" / "... Phase 2"): area names are shown whole (SIGNUP_AREAS refuses longer
 * ones than screens can show). Names like Ng'ang'a are common in Kenya, and phone keyboards type the
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
const areas = [
  { name: "Kahawa Wendani Phase 1", routerId: null },
  { name: "Kahawa Wendani Phase 2", routerId: null },
];

describe("sign-up areas", () => {
  it("longer than screens can show are refused when the configuration is read", () => {
    const env = { SIGNUP_AREAS: "Kahawa Wendani Phase 1,Kahawa Wendani Phase 2 Extension North" };
    expect(() => loadConfig(env)).toThrow(/at most 26 characters/);
    expect(loadConfig({ SIGNUP_AREAS: "Kahawa Wendani Phase 1=3" }).SIGNUP_AREAS).toEqual([
      { name: "Kahawa Wendani Phase 1", routerId: 3 },
    ]);
  });

  it("are told apart on the area screen and on the confirmation", async () => {
    const run = (inputs: string[]) =>
      runMenu(
        {
          user: { phone: "+254712000222", language: "en", customer: null },
          session: { id: `ussd:areas:${inputs.length}`, channel: "ussd" },
          inputs,
        },
        subscriberScreens,
        fakeServices({ plans: [plan] }),
        { ...settings, signupAreas: areas },
      );
    const list = await run(["2", "1", "Amina Wekesa"]);
    const labels = (list.choices ?? []).filter((c) => c.key === "1" || c.key === "2").map((c) => c.label);
    expect(new Set(labels).size).toBe(2);
    const confirm1 = (await run(["2", "1", "Amina Wekesa", "1"])).lines[0];
    const confirm2 = (await run(["2", "1", "Amina Wekesa", "2"])).lines[0];
    expect(confirm1).not.toBe(confirm2);
  });
});

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
