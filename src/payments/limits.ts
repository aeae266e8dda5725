import { defaultPaymentLimits, type PaymentLimits } from "../billing/intents/request.ts";
import type { Config } from "../config.ts";

/**
 * The STK prompt limits from the configuration (`STK_LIMIT_*`). A module of its own, apart from
 * src/payments/index.ts and its Daraja fake on node:http, so that the Worker, which records intents
 * without sending them, applies the same limits as the Node service.
 */
export function paymentLimitsFrom(config: Config): PaymentLimits {
  return {
    ...defaultPaymentLimits,
    promptsPerWindow: config.STK_LIMIT_COUNT,
    windowMs: config.STK_LIMIT_WINDOW_SECONDS * 1000,
    perAccount: config.STK_LIMIT_PER_ACCOUNT,
    perSource: config.STK_LIMIT_PER_SOURCE,
    totalPerMinute: config.STK_LIMIT_TOTAL_PER_MINUTE,
  };
}
