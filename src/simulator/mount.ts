import type { Hono } from "hono";
import type { Config } from "../config.ts";
import { DEMO_PHONE } from "../sandbox/seed.ts";
import { createSimulatorRoutes, type SimulatorDeps } from "./routes.ts";

/** What only the running sandbox knows: its fakes, and where the chat fakes listen. */
export type SandboxParts = Pick<
  SimulatorDeps,
  "daraja" | "sms" | "router" | "telegramUrl" | "whatsappUrl" | "pollMs"
>;

/**
 * Mounts the simulator at `/simulator` on the sandbox's app, as `npm start` does in sandbox mode.
 * Its USSD pane posts to the app's own USSD route in-process: no USSD token or address rule stands
 * between the page and the menu.
 */
export function mountSimulator(
  app: Hono,
  config: Pick<Config, "ISP_NAME" | "USSD_TOKEN">,
  parts: SandboxParts,
) {
  app.route(
    "/simulator",
    createSimulatorRoutes({
      ispName: config.ISP_NAME,
      serviceCode: "*384*1#",
      demoPhone: DEMO_PHONE,
      ussd: (form) =>
        app.request(config.USSD_TOKEN ? `/ussd/${config.USSD_TOKEN}` : "/ussd", {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: form.toString(),
        }),
      ...parts,
    }),
  );
}
