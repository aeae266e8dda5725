import { Cron } from "croner";
import type { Actor, BillingContext } from "../../billing/context.ts";
import { settleStkResult } from "../../billing/intents/settle.ts";
import {
  askAgainLater,
  giveUpAsking,
  listIntentsAwaitingResult,
  timeOutIntent,
  UNANSWERED_ASK_FOR_MS,
} from "../../billing/intents/timeout.ts";
import { runJobOutsideTransaction } from "../../jobs/runner.ts";
import type { Logger } from "../../logger.ts";
import { DarajaError, type StkGateway } from "./daraja.ts";
import { stkResultFromQuery } from "./wire.ts";

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
  /** Timed out without an answer, asked about for a day, and still none: told to the admins. */
  unresolved: number;
  errors: number;
}

const actor: Actor = { kind: "system", id: "mpesa-recovery" };
export const recoveryJobName = "mpesa_recovery";

/**
 * Callbacks get lost. For every push still pending after `pendingSeconds`, asks M-Pesa for its
 * result and settles it exactly as the callback would have; one that M-Pesa still cannot answer
 * after `giveUpSeconds` times out (a success arriving later is still credited). Its callback may
 * be lost too, and the query may have been failing all along (Daraja down, our network): so a
 * push timed out is asked about again every few minutes for a day (timeout.ts), and if M-Pesa
 * still gives no answer the admins are told, as the money may have been paid.
 */
export async function recoverPendingIntents(options: RecoveryOptions): Promise<RecoveryCounts> {
  const { ctx, gateway, logger } = options;
  const counts: RecoveryCounts = {
    queried: 0,
    settled: 0,
    timedOut: 0,
    stillPending: 0,
    unresolved: 0,
    errors: 0,
  };
  const now = ctx.clock.now();
  const waiting = await listIntentsAwaitingResult(ctx.db, now, options.pendingSeconds * 1000);
  for (const intent of waiting) {
    counts.queried++;
    const age = now.getTime() - intent.sentAt.getTime();
    let answer: Awaited<ReturnType<typeof gateway.stkQuery>>;
    try {
      answer = await gateway.stkQuery(intent.checkoutRequestId);
    } catch (error) {
      const processing = error instanceof DarajaError && error.stillProcessing;
      if (!processing) {
        counts.errors++;
        logger.warn({ err: error, intentId: intent.id }, "STK status query failed");
      }
      if (intent.status === "timed_out") {
        if (age < UNANSWERED_ASK_FOR_MS) await askAgainLater(ctx, intent.id);
        else if (await giveUpAsking(ctx, actor, intent.id)) {
          counts.unresolved++;
          logger.error({ intentId: intent.id }, "M-Pesa never answered whether a push was paid");
        }
      } else if (age >= options.giveUpSeconds * 1000 && (await timeOutIntent(ctx, actor, intent.id)))
        counts.timedOut++;
      else counts.stillPending++;
      continue;
    }
    // M-Pesa answered: a failure to record that answer leaves the intent pending for the next run
    // (never timed out: the answer may be "paid").
    try {
      await settleStkResult(ctx, actor, stkResultFromQuery(intent.checkoutRequestId, answer));
      counts.settled++;
    } catch (error) {
      counts.errors++;
      counts.stillPending++;
      logger.error(
        { err: error, intentId: intent.id },
        "STK status answer could not be settled: will ask again",
      );
    }
  }
  return counts;
}

/** A run that has not ended after this long died with its instance (each query has its own timeout). */
const recoveryStaleAfterMs = 10 * 60_000;

/**
 * One run of the recovery job through the job runner: one instance at a time, recorded in
 * `job_runs`. Null when the run was skipped (another is under way) or failed.
 */
export async function runRecoveryJob(options: RecoveryOptions): Promise<RecoveryCounts | null> {
  const { ctx } = options;
  const result = await runJobOutsideTransaction(
    ctx.db,
    ctx.clock,
    recoveryJobName,
    async () => {
      const counts = await recoverPendingIntents(options);
      return { counts: { ...counts }, recovery: counts };
    },
    { staleAfterMs: recoveryStaleAfterMs },
  );
  if (result.status === "failed") options.logger.error({ err: result.error }, "M-Pesa recovery job failed");
  return result.outcome?.recovery ?? null;
}

/**
 * Runs the job every `everySeconds` on an instance that runs the scheduled jobs (`SCHEDULER`);
 * null, and nothing scheduled, on the others.
 */
export function scheduleRecovery(
  options: RecoveryOptions & { everySeconds?: number; scheduler: boolean },
): Cron | null {
  if (!options.scheduler) return null;
  const every = Math.max(1, Math.min(59, Math.round(options.everySeconds ?? 30)));
  return new Cron(`*/${every} * * * * *`, { protect: true, name: recoveryJobName }, async () => {
    // Thrown from the timer (the database down), it would end the process: logged, tried next tick.
    await runRecoveryJob(options).catch((error: unknown) =>
      options.logger.error({ err: error }, "M-Pesa recovery could not run"),
    );
  });
}
