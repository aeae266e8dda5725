import { Cron } from "croner";
import { eq } from "drizzle-orm";
import type { Actor, BillingContext } from "../../billing/context.ts";
import { settleStkResult } from "../../billing/intents/settle.ts";
import { listIntentsAwaitingResult, timeOutIntent } from "../../billing/intents/timeout.ts";
import { jobRuns } from "../../db/schema/index.ts";
import type { Logger } from "../../logger.ts";
import { DarajaError, type StkGateway } from "./daraja.ts";

export interface RecoveryOptions {
  ctx: BillingContext;
  gateway: StkGateway;
  logger: Logger;
  /** Pushes without a result for this long are asked about (MPESA_PENDING_RECOVERY_SECONDS). */
  pendingSeconds: number;
  /** Pushes still without a result after this long time out. */
  giveUpSeconds: number;
}

export interface RecoveryCounts {
  queried: number;
  settled: number;
  timedOut: number;
  stillPending: number;
  errors: number;
}

const actor: Actor = { kind: "system", id: "mpesa-recovery" };
export const recoveryJobName = "mpesa_recovery";

/**
 * Callbacks get lost. For every push still pending after `pendingSeconds`, asks M-Pesa for its
 * result and settles it exactly as the callback would have; one that M-Pesa still cannot answer
 * after `giveUpSeconds` times out (a success arriving later is still credited).
 */
export async function recoverPendingIntents(options: RecoveryOptions): Promise<RecoveryCounts> {
  const { ctx, gateway, logger } = options;
  const counts: RecoveryCounts = { queried: 0, settled: 0, timedOut: 0, stillPending: 0, errors: 0 };
  const now = ctx.clock.now();
  const waiting = await listIntentsAwaitingResult(ctx.db, now, options.pendingSeconds * 1000);
  for (const intent of waiting) {
    counts.queried++;
    const overdue = now.getTime() - intent.sentAt.getTime() >= options.giveUpSeconds * 1000;
    try {
      const answer = await gateway.stkQuery(intent.checkoutRequestId);
      const resultCode = Number(answer.ResultCode);
      if (!Number.isInteger(resultCode)) throw new Error(`unreadable ResultCode ${answer.ResultCode}`);
      await settleStkResult(ctx, actor, {
        checkoutRequestId: intent.checkoutRequestId,
        merchantRequestId: answer.MerchantRequestID ?? null,
        resultCode,
        resultDesc: answer.ResultDesc ?? "",
        source: "query",
        raw: answer,
      });
      counts.settled++;
    } catch (error) {
      const processing = error instanceof DarajaError && error.stillProcessing;
      if (!processing) {
        counts.errors++;
        logger.warn({ err: error, intentId: intent.id }, "STK status query failed");
      }
      if (overdue && (await timeOutIntent(ctx, actor, intent.id))) counts.timedOut++;
      else counts.stillPending++;
    }
  }
  return counts;
}

/** One recorded run of the recovery job (`job_runs`). */
export async function runRecoveryJob(options: RecoveryOptions): Promise<RecoveryCounts | null> {
  const { ctx } = options;
  const [run] = await ctx.db
    .insert(jobRuns)
    .values({ job: recoveryJobName, startedAt: ctx.clock.now(), status: "ok" })
    .returning({ id: jobRuns.id });
  try {
    const counts = await recoverPendingIntents(options);
    await ctx.db
      .update(jobRuns)
      .set({ finishedAt: ctx.clock.now(), counts: { ...counts } })
      .where(eq(jobRuns.id, run!.id));
    return counts;
  } catch (error) {
    options.logger.error({ err: error }, "M-Pesa recovery job failed");
    await ctx.db
      .update(jobRuns)
      .set({ finishedAt: ctx.clock.now(), status: "failed", error: String(error) })
      .where(eq(jobRuns.id, run!.id));
    return null;
  }
}

/** Runs the job every `everySeconds`, never two runs at once. */
export function scheduleRecovery(options: RecoveryOptions & { everySeconds?: number }): Cron {
  const every = Math.max(1, Math.min(59, Math.round(options.everySeconds ?? 30)));
  return new Cron(`*/${every} * * * * *`, { protect: true, name: recoveryJobName }, async () => {
    await runRecoveryJob(options);
  });
}
