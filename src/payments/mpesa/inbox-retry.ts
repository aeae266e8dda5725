import { settleStkResult } from "../../billing/intents/settle.ts";
import type { MpesaRoutes } from "../routes.ts";
import { processStoredRequest, webhookActor } from "./process.ts";

export interface InboxRetryCounts {
  [key: string]: number;
  imported: number;
  retried: number;
  processed: number;
  failed: number;
}

/** Requests younger than this may still be in the hands of the request that stored them. */
const settleMs = 30_000;
/**
 * Tries a failing request gets every half minute or so; after them it is tried once an hour (for a
 * week, see `slowRetryForMs`), and the admins are told (src/bots/admin/mpesa-alerts.ts).
 */
export const maxInboxAttempts = 10;
/** How often a request past its quick tries is tried again. */
export const slowRetryEveryMs = 60 * 60_000;
/**
 * For how long after it was received a failing request is still tried: the admins were told when
 * its quick tries ran out, and money an admin has meanwhile recorded by hand (under another
 * reference) must not be credited a second time by a retry months later.
 */
export const slowRetryForMs = 7 * 24 * 60 * 60_000;

/**
 * The inbox's second chance: requests whose processing failed (or never finished: the process died)
 * are processed again (`claim`: on scheduler instances), and requests this instance spooled to its
 * disk while the database was away are stored and processed (on every instance: the spool is local).
 */
export async function retryInbox(
  mpesa: MpesaRoutes,
  options: { claim: boolean } = { claim: true },
): Promise<InboxRetryCounts> {
  const { inbox } = mpesa;
  const counts: InboxRetryCounts = { imported: 0, retried: 0, processed: 0, failed: 0 };
  // A retry settles on its own, not through the request path's batcher.
  const deps = {
    ...mpesa.process,
    settleStk: (result: Parameters<typeof settleStkResult>[2]) =>
      settleStkResult(mpesa.process.ctx, webhookActor, result),
  };
  // Claimed first: requests imported below are processed right away, not claimed again here.
  const claimed = options.claim
    ? await inbox.claimForRetry(settleMs, {
        quickTries: maxInboxAttempts,
        slowRetryEveryMs,
        slowRetryForMs,
      })
    : [];
  counts.retried = claimed.length;
  const imported = await inbox.importSpool();
  counts.imported = imported.length;
  for (const request of [...claimed, ...imported]) {
    try {
      await processStoredRequest(deps, request);
      counts.processed++;
    } catch (error) {
      counts.failed++;
      await inbox.markFailed(request.id, error, { countTry: false });
      mpesa.process.logger.warn({ err: error, inboxId: request.id }, "M-Pesa request failed again");
    }
  }
  return counts;
}
