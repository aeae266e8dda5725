import type { SettleOutcome, StkResult } from "../../billing/intents/settle.ts";

interface Waiting {
  result: StkResult;
  resolve: (outcome: SettleOutcome) => void;
  reject: (error: unknown) => void;
}

export interface StkBatcherOptions {
  settleMany: (results: StkResult[]) => Promise<SettleOutcome[]>;
  settleOne: (result: StkResult) => Promise<SettleOutcome>;
  /** Transactions in flight at once. */
  lanes?: number;
  maxBatch?: number;
}

/**
 * Group commit for STK callbacks: callbacks that arrive while a settlement transaction is running
 * are settled together in the next one, so a burst costs a few transactions instead of one each.
 * A lone callback is settled at once (no timer, no added latency). Each caller still gets its own
 * outcome after its transaction committed, so Daraja is answered only once the credit is durable.
 * If a batch fails (a deadlock with another instance, say), its callbacks are settled one by one.
 */
export function createStkBatcher(options: StkBatcherOptions) {
  const lanes = options.lanes ?? 2;
  const maxBatch = options.maxBatch ?? 200;
  const queue: Waiting[] = [];
  let running = 0;

  async function settle(batch: Waiting[]): Promise<void> {
    try {
      const outcomes =
        batch.length === 1
          ? [await options.settleOne(batch[0]!.result)]
          : await options.settleMany(batch.map((w) => w.result));
      for (const [i, waiting] of batch.entries()) waiting.resolve(outcomes[i]!);
    } catch {
      for (const waiting of batch) {
        await options.settleOne(waiting.result).then(waiting.resolve, waiting.reject);
      }
    }
  }

  function pump(): void {
    while (running < lanes && queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      running++;
      void settle(batch).finally(() => {
        running--;
        pump();
      });
    }
  }

  return {
    settle(result: StkResult): Promise<SettleOutcome> {
      return new Promise<SettleOutcome>((resolve, reject) => {
        queue.push({ result, resolve, reject });
        pump();
      });
    },
  };
}
