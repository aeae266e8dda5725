import type { Feature } from "../kit.ts";
import { auditFeature } from "./audit.ts";
import { failedFeature } from "./failed.ts";
import { resendFeature } from "./resend.ts";
import { retryFeature } from "./retry.ts";
import { routersFeature } from "./routers.ts";
import { syncFeature } from "./sync.ts";

/** The operations commands: router health and reconciliation, what was given up, the audit log. */
export const opsFeatures: readonly Feature[] = [
  routersFeature,
  syncFeature,
  retryFeature,
  failedFeature,
  resendFeature,
  auditFeature,
];
