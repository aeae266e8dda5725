import {
  type ChatDeliveryOptions,
  type ClaimedRow,
  chatLeaseMs,
  claimDueChats,
  createChatSending,
} from "./chat-delivery.ts";

/** The chat delivery worker: when passes of `chat-delivery.ts` run, in the background of a process. */

export interface ChatWorker {
  /** Runs a pass now (after answers were queued) instead of waiting for the next tick. */
  kick(): void;
  /**
   * Sends rows the caller wrote already leased to this process (`leaseMs` from when they were
   * written): no pass claims them first, so an answer goes out one statement sooner.
   */
  deliver(rows: readonly ClaimedRow[], leaseUntil: Date): void;
  /** How long rows handed to `deliver` should be leased for. */
  leaseMs: number;
  stop(): Promise<void>;
}

/**
 * Polls every `intervalMs`; a kick runs a pass at once, and a pass that found work is followed by
 * another, so an answer queued while a pass was sending goes out right after it.
 *
 * Up to `passes` passes run at once: an answer queued while a pass waits on slow sends is claimed
 * and sent by another instead of waiting for the slowest send of the first. A chat's next row is
 * not due while an earlier one waits, so passes (of this process or another) never reorder a chat's
 * messages.
 *
 * Rows handed to `deliver` are sent beside the passes. A row queued behind one of them (not due
 * while the earlier one waits) is claimed by a pass that runs once that delivery has finished, if a
 * kick came meanwhile; one queued by another instance waits for that instance's next poll.
 */
export function startChatWorker(
  options: ChatDeliveryOptions & { intervalMs?: number; passes?: number },
): ChatWorker {
  const intervalMs = options.intervalMs ?? 2_000;
  const maxPasses = options.passes ?? 4;
  const sending = createChatSending(options);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const running = new Set<Promise<void>>();
  const delivering = new Set<Promise<unknown>>();
  let kicked = false;
  let kicks = 0;
  // Rows handed to `deliver` beyond as many chats as all passes would send to at once wait their
  // turn here (still leased).
  const maxDeliveries = maxPasses * (options.concurrency ?? 32);
  const waitingDeliveries: { rows: readonly ClaimedRow[]; leaseUntil: Date }[] = [];
  // This process's claims run one after the other. A claim locks every row it looks at, due or not
  // (skip locked), so a pass claiming while another still does could skip the very row it was run
  // for (an answer queued behind one just sent), which would then wait for the next poll.
  let claiming: Promise<unknown> = Promise.resolve();
  const claimInTurn = () => {
    const claim = claiming.then(() => claimDueChats(options));
    claiming = claim.catch(() => undefined);
    return claim;
  };

  /** Rows this worker will not send after all: due at once, for another instance's pass. */
  function putBack(rows: readonly ClaimedRow[], leaseUntil: Date) {
    const release = sending
      .release(
        rows.map((row) => row.id),
        leaseUntil,
      )
      .catch((error: unknown) => options.logger?.error({ err: error }, "chat rows not put back"))
      .finally(() => delivering.delete(release));
    delivering.add(release);
  }

  function startDeliveries() {
    while (delivering.size < maxDeliveries && waitingDeliveries.length > 0) {
      const { rows, leaseUntil } = waitingDeliveries.shift()!;
      const kicksBefore = kicks;
      let allSent = false;
      const delivery = sending
        .send(rows, leaseUntil)
        .then((counts) => {
          allSent = counts.sent === rows.length;
        })
        .catch((error: unknown) => options.logger?.error({ err: error }, "chat delivery failed"))
        .finally(() => {
          delivering.delete(delivery);
          // Rows put back or retried later, or a row queued meanwhile behind one of these: a pass
          // takes them now rather than at the next poll.
          if (!allSent || kicks !== kicksBefore) tick();
          startDeliveries();
        });
      delivering.add(delivery);
    }
  }

  const schedule = (delayMs: number) => {
    if (stopped) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(tick, delayMs);
  };

  function tick() {
    if (stopped) return;
    if (running.size >= maxPasses) {
      kicked = true;
      return;
    }
    kicked = false;
    // Assigned before the pass can finish: its first step awaits the database.
    let pass: Promise<void> | undefined;
    pass = (async () => {
      let again = false;
      try {
        const claimed = await claimInTurn();
        if (claimed.rows.length > 0) {
          const counts = await sending.send(claimed.rows, claimed.leaseUntil);
          again = counts.sent + counts.retried + counts.dead + counts.toSms > 0;
        }
      } catch (error) {
        options.logger?.error({ err: error }, "chat delivery pass failed");
      } finally {
        if (pass) running.delete(pass);
        if (again || kicked) tick();
        else if (running.size === 0) schedule(intervalMs);
      }
    })();
    running.add(pass);
  }
  schedule(0);
  return {
    kick() {
      kicks++;
      tick();
    },
    deliver(rows, leaseUntil) {
      if (rows.length === 0) return;
      if (stopped) return putBack(rows, leaseUntil);
      waitingDeliveries.push({ rows, leaseUntil });
      startDeliveries();
    },
    leaseMs: chatLeaseMs(options),
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      for (const { rows, leaseUntil } of waitingDeliveries.splice(0)) putBack(rows, leaseUntil);
      while (running.size > 0 || delivering.size > 0) await Promise.all([...running, ...delivering]);
    },
  };
}
