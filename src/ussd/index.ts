import type { Actor, BillingContext } from "../billing/context.ts";
import type { PaymentRequest, RequestPaymentResult } from "../billing/intents/request.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { createMenuServices } from "../menu/services.ts";
import type { MenuSettings } from "../menu/types.ts";
import { createUssdRoutes } from "./routes.ts";

export function menuSettingsFrom(config: Config): MenuSettings {
  return {
    isp: config.ISP_NAME,
    support: config.SUPPORT_PHONE,
    timezone: config.TIMEZONE,
    minPayCents: 1_000,
    maxPayCents: 150_000_00,
    servedCountries: config.SERVED_COUNTRIES,
    signupAreas: config.SIGNUP_AREAS,
    ...(config.ADMIN_PHONE ? { adminPhone: config.ADMIN_PHONE } : {}),
  };
}

/** The `/ussd` routes for the app, bound to the billing core. */
export function ussdRoutesFrom(deps: {
  config: Config;
  ctx: BillingContext;
  logger: Logger;
  /** `Payments.request` when payments are running: records the intent and wakes the dispatcher. */
  requestPayment?: (actor: Actor, input: PaymentRequest) => Promise<RequestPaymentResult>;
}) {
  return createUssdRoutes({
    db: deps.ctx.db,
    services: createMenuServices(deps.ctx, { requestPayment: deps.requestPayment }),
    settings: menuSettingsFrom(deps.config),
    logger: deps.logger.child({ module: "ussd" }),
    token: deps.config.USSD_TOKEN,
    allowedIps: deps.config.USSD_ALLOWED_IPS,
    trustedProxies: deps.config.TRUST_PROXY,
  });
}
