import { sql } from "drizzle-orm";
import { enqueueMessage } from "../billing/outbox.ts";
import type { Clock } from "../clock.ts";
import type { Db } from "../db/client.ts";
import { routers } from "../db/schema/index.ts";
import type { Logger } from "../logger.ts";
import { type RouterApi, RouterTrapError, RouterUnavailableError } from "./connection.ts";
import {
  type DesiredProfile,
  desiredHotspotUser,
  desiredProfile,
  desiredSecret,
  loadPlan,
  loadSubscription,
  loadVoucher,
} from "./desired.ts";
import {
  ensureHotspotUser,
  ensureProfile,
  ensureSecret,
  type OwedDrops,
  removeHotspotUser,
  removeSecret,
} from "./driver.ts";
import { LeaseExpiredError, sendWhileLeased } from "./lease-guard.ts";
import { subscriptionMarker, voucherMarker } from "./markers.ts";
import { type ClaimedRow, claimDueRows, owedDropsOf } from "./outbox-claim.ts";
import { dropProfileSessions, splitRateLimitChange } from "./plan-speed.ts";
import type { RouterPool } from "./pool.ts";
import { makeRouterRowsDue, RouterProber } from "./prober.ts";

/**
 * Delivers `provisioning_outbox`. A row names a target (a subscription on a router, a voucher, a
 * plan's profile); delivering it converges that target to the state the database holds now. So:
 * - rows for the same target are collapsed: the newest is delivered, the older ones `superseded`;
 * - a target is delivered by one worker at a time (a lease in `claimed_until`), in row order;
 * - the claim is one short transaction; routers are only called after it commits.
 */

/**
 * Time kept between the last moment a command of a row may be written and the end of its lease
 * (lease-guard.ts); it must exceed a command's timeout (10 s by default).
 */
const LEASE_SAFETY_MS = 45_000;

export interface WorkerOptions {
  batchSize: number;
  pollMs: number;
  /** How long a claimed row stays reserved for the worker delivering it. */
  leaseMs: number;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Targets delivered at once per router (commands are pipelined on its one connection). */
  perRouterConcurrency: number;
  /** Rows being delivered at most, across routers, before the worker stops claiming. */
  maxRowsInFlight: number;
  /** Who gets the `admin_alert` SMS when a row is given up. */
  adminPhone?: string;
  /** How often a router that cannot be reached is asked whether it is back (ROUTER_PROBE_SECONDS). */
  probeMs: number;
}

export const defaultWorkerOptions: WorkerOptions = {
  batchSize: 500,
  pollMs: 1_000,
  leaseMs: 120_000,
  maxAttempts: 8,
  backoffBaseMs: 2_000,
  backoffMaxMs: 300_000,
  perRouterConcurrency: 64,
  maxRowsInFlight: 5_000,
  probeMs: 15_000,
};

export interface WorkerDeps {
  db: Db;
  clock: Clock;
  pool: RouterPool;
  logger?: Logger;
}

const at = (d: Date) => sql`${d.toISOString()}::timestamptz`;

/** A row whose delivery failed, with the session drops it still owes (driver.ts, `OwedDrops`). */
interface Failure {
  row: ClaimedRow;
  error: unknown;
  owedDrops: string[];
}

export class ProvisioningWorker {
  private readonly options: WorkerOptions;
  private running = false;
  private loopDone: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private kicked = false;
  private readonly inFlight = new Set<Promise<void>>();
  private rowsInFlight = 0;
  private readonly profileCache = new Map<string, number>();
  private readonly profilesEnsuring = new Map<string, Promise<void>>();
  private readonly prober: RouterProber;

  constructor(
    private readonly deps: WorkerDeps,
    options: Partial<WorkerOptions> = {},
  ) {
    this.options = { ...defaultWorkerOptions, ...options };
    this.prober = new RouterProber(deps, this.options.probeMs, () => this.kick());
    deps.pool.onRecovered((routerId) => void this.routerRecovered(routerId));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
    this.prober.start();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.prober.stop();
    await this.loopDone;
    await Promise.allSettled([...this.inFlight]);
  }

  /** Deliver now (after a payment, a suspension…) instead of at the next poll. */
  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  /** Claims and delivers until nothing is due; for tests and one-off runs. Returns rows delivered. */
  async drain(): Promise<number> {
    let total = 0;
    for (;;) {
      const claimed = await this.claimAndDispatch();
      await Promise.allSettled([...this.inFlight]);
      total += claimed;
      if (claimed === 0) return total;
    }
  }

  private async loop(): Promise<void> {
    while (this.running) {
      this.kicked = false;
      let claimed = 0;
      try {
        if (this.rowsInFlight < this.options.maxRowsInFlight) claimed = await this.claimAndDispatch();
      } catch (error) {
        this.deps.logger?.error({ err: error }, "provisioning claim failed");
      }
      if (!this.running) break;
      if (
        this.kicked ||
        (claimed >= this.options.batchSize && this.rowsInFlight < this.options.maxRowsInFlight)
      ) {
        continue;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.options.pollMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  private async claimAndDispatch(): Promise<number> {
    const rows = await this.claim();
    if (rows.length === 0) return 0;
    const byRouter = new Map<string, ClaimedRow[]>();
    for (const row of rows) {
      const key = String(row.routerId ?? "*");
      const list = byRouter.get(key) ?? [];
      list.push(row);
      byRouter.set(key, list);
    }
    this.rowsInFlight += rows.length;
    for (const list of byRouter.values()) {
      const delivery = this.deliverAll(list).finally(() => {
        this.inFlight.delete(delivery);
        this.rowsInFlight -= list.length;
        if (this.running && this.rowsInFlight < this.options.maxRowsInFlight) this.wake?.();
      });
      this.inFlight.add(delivery);
    }
    return rows.length;
  }

  /** One short transaction: pick due rows, collapse each target to its newest row, lease it. */
  private claim(): Promise<ClaimedRow[]> {
    return claimDueRows(this.deps, this.options, this.deps.pool.unavailableRouterIds());
  }

  private async deliverAll(rows: ClaimedRow[]): Promise<void> {
    const failures: Failure[] = [];
    const done: ClaimedRow[] = [];
    const released: ClaimedRow[] = [];
    // Once a row's lease ends, another worker may claim a newer row for the same target, and a late
    // command of this one would overwrite the router with an older state: each command is only
    // written while the lease surely outlives it (lease-guard.ts). A row not started by then goes
    // back to the queue; one cut short waits out a back-off first (`failed`).
    const safetyMs = Math.min(LEASE_SAFETY_MS, this.options.leaseMs / 2);
    let next = 0;
    const work = async () => {
      while (next < rows.length) {
        const row = rows[next++]!;
        const startBy = row.leaseEndsAt - safetyMs;
        if (this.deps.clock.now().getTime() > startBy) {
          released.push(row);
          continue;
        }
        const owed: OwedDrops = { names: new Set(owedDropsOf(row.payload)) };
        try {
          await this.deliver(row, startBy, owed);
          done.push(row);
        } catch (error) {
          failures.push({ row, error, owedDrops: [...owed.names] });
        }
      }
    };
    const lanes = Math.min(this.options.perRouterConcurrency, rows.length);
    await Promise.all(Array.from({ length: lanes }, work));
    // Outcomes are written together: a router that is down fails hundreds of rows at once.
    try {
      await this.succeeded(done);
      await this.failed(failures);
      await this.release(released);
    } catch (error) {
      this.deps.logger?.error({ err: error }, "recording provisioning outcomes failed");
    }
  }

  private async deliver(row: ClaimedRow, startBy: number, owed: OwedDrops): Promise<void> {
    const { db, pool, clock } = this.deps;
    const connect = async (routerId: number) =>
      sendWhileLeased(await pool.get(routerId), clock, () => startBy);
    // A router known to be down fails the row at once, before any database read.
    if (row.routerId !== null) pool.assertAvailable(row.routerId);
    if (row.subscriptionId !== null) {
      const loaded = await loadSubscription(db, row.subscriptionId);
      const routerId = row.routerId ?? loaded?.subscription.routerId ?? null;
      if (routerId === null) return;
      const api = await connect(routerId);
      const want =
        loaded && loaded.subscription.routerId === routerId
          ? desiredSecret(loaded.subscription, loaded.plan)
          : null;
      if (!want || !loaded) {
        await removeSecret(api, subscriptionMarker(row.subscriptionId), loaded?.subscription.networkUsername);
        return;
      }
      await this.withProfile(api, routerId, desiredProfile(loaded.plan), () => ensureSecret(api, want, owed));
      return;
    }
    if (row.voucherId !== null) {
      const loaded = await loadVoucher(db, row.voucherId);
      const targets = row.routerId !== null ? [row.routerId] : await this.allRouterIds();
      await this.onEachRouter(targets, async (routerId) => {
        const api = await connect(routerId);
        const forThisRouter =
          loaded && (loaded.voucher.routerId === null || loaded.voucher.routerId === routerId);
        const want = forThisRouter
          ? desiredHotspotUser(loaded.voucher, loaded.plan, this.deps.clock.now())
          : null;
        if (!want || !loaded)
          await removeHotspotUser(api, voucherMarker(row.voucherId!), loaded?.voucher.code);
        else
          await this.withProfile(api, routerId, desiredProfile(loaded.plan), () =>
            ensureHotspotUser(api, want),
          );
      });
      return;
    }
    const planId = Number(row.payload.planId);
    if (!Number.isInteger(planId)) return;
    const plan = await loadPlan(db, planId);
    if (!plan) return;
    const rateLimitChanged = row.payload.rateLimitChanged === true;
    if (rateLimitChanged && row.routerId === null) {
      await splitRateLimitChange(db, clock.now(), planId);
      return;
    }
    const targets = row.routerId !== null ? [row.routerId] : await this.allRouterIds();
    await this.onEachRouter(targets, async (routerId) => {
      const api = await connect(routerId);
      const profile = desiredProfile(plan);
      await ensureProfile(api, profile);
      this.profileCache.set(this.profileKey(routerId, profile), Date.now());
      // Even when the profile was already updated (by a subscriber's delivery that ensured it first).
      if (rateLimitChanged) await dropProfileSessions(api, profile);
    });
  }

  /**
   * A row meant for every router (a voucher valid on all hotspots) reaches the routers that are up
   * even when one is down; the row then fails with that router's error and is delivered again
   * (the calls are idempotent) until every router has it.
   */
  private async onEachRouter(routerIds: number[], work: (routerId: number) => Promise<void>): Promise<void> {
    let firstError: unknown;
    for (const routerId of routerIds) {
      try {
        await work(routerId);
      } catch (error) {
        firstError ??= error;
      }
    }
    if (firstError !== undefined) throw firstError;
  }

  private profileKey(routerId: number, p: DesiredProfile): string {
    return `${routerId}|${p.kind}|${p.name}|${p.rateLimit}`;
  }

  /**
   * RouterOS refuses a secret whose profile does not exist, so the profile is ensured first; that
   * check is remembered for a minute (the reconciliation repairs a profile deleted by hand meanwhile).
   */
  private async withProfile<T>(
    api: RouterApi,
    routerId: number,
    profile: DesiredProfile,
    op: () => Promise<T>,
  ) {
    const key = this.profileKey(routerId, profile);
    const checked = this.profileCache.get(key);
    if (checked === undefined || Date.now() - checked > 60_000) {
      // Concurrent deliveries for the same plan share one check instead of racing to add the profile.
      let ensuring = this.profilesEnsuring.get(key);
      if (!ensuring) {
        ensuring = ensureProfile(api, profile)
          .then(() => {
            this.profileCache.set(key, Date.now());
          })
          .finally(() => this.profilesEnsuring.delete(key));
        this.profilesEnsuring.set(key, ensuring);
      }
      await ensuring;
    }
    try {
      return await op();
    } catch (error) {
      if (!(error instanceof RouterTrapError && /does not match any value of profile/.test(error.message)))
        throw error;
      await ensureProfile(api, profile);
      this.profileCache.set(key, Date.now());
      return op();
    }
  }

  private async allRouterIds(): Promise<number[]> {
    const rows = await this.deps.db.select({ id: routers.id }).from(routers);
    return rows.map((r) => r.id);
  }

  private async succeeded(rows: ClaimedRow[]): Promise<void> {
    if (rows.length === 0) return;
    const now = this.deps.clock.now();
    for (const chunk of chunks(rows, 1_000)) {
      await this.deps.db.execute(sql`
        update provisioning_outbox set status = 'done', done_at = ${at(now)}, claimed_until = null, last_error = null
        where id in (${sql.join(
          chunk.map((r) => sql`${r.id}::int`),
          sql`, `,
        )})`);
    }
  }

  private async failed(failures: Failure[]): Promise<void> {
    if (failures.length === 0) return;
    const now = this.deps.clock.now();
    const retry: Array<{ id: number; message: string; next: Date; uncount: number; drops: string[] }> = [];
    for (const { row, error, owedDrops: drops } of failures) {
      const message = (error instanceof Error ? error.message : String(error)).slice(0, 500);
      // A router that is down delays work but never loses it: an unreachable router does not use
      // up the row's attempts (only what the router refuses does), and the row waits at the longest
      // back-off, or until the router is seen again (the prober, routerRecovered).
      if (error instanceof RouterUnavailableError) {
        retry.push({
          id: row.id,
          message,
          next: new Date(now.getTime() + this.options.backoffMaxMs),
          uncount: 1,
          drops,
        });
        continue;
      }
      // A command held up (behind the connection's in-flight cap, or a reconnect) until the lease
      // had too little time left was not sent: no fault of the router, so no attempt is used up.
      // Due again at once, the row would be claimed and held up again at once by the same cause.
      const leaseCut = error instanceof LeaseExpiredError;
      if (!leaseCut && row.attempts >= this.options.maxAttempts) {
        await this.giveUp(row, message, now);
        continue;
      }
      const delay = Math.min(this.options.backoffMaxMs, this.options.backoffBaseMs * 2 ** (row.attempts - 1));
      const jitter = Math.floor(Math.random() * Math.min(1_000, delay / 4));
      retry.push({
        id: row.id,
        message,
        next: new Date(now.getTime() + delay + jitter),
        uncount: leaseCut ? 1 : 0,
        drops,
      });
    }
    for (const chunk of chunks(retry, 1_000)) {
      const values = sql.join(
        chunk.map(
          (r) =>
            sql`(${r.id}::int, ${r.message}::text, ${r.next.toISOString()}::timestamptz, ${r.uncount}::int, ${JSON.stringify(r.drops)}::jsonb)`,
        ),
        sql`, `,
      );
      // Session drops still owed (driver.ts, OwedDrops) are kept on the row for its retry.
      await this.deps.db.execute(sql`
        update provisioning_outbox o set claimed_until = null, last_error = v.message, next_attempt_at = v.next,
          attempts = o.attempts - v.uncount,
          payload = case when jsonb_array_length(v.drops) = 0 then o.payload - 'dropSessions'
            else jsonb_set(o.payload, '{dropSessions}', v.drops) end
        from (values ${values}) as v(id, message, next, uncount, drops)
        where o.id = v.id`);
    }
  }

  /** Rows not started in time go back to the queue as they were, due now. */
  private async release(rows: ClaimedRow[]): Promise<void> {
    if (rows.length === 0) return;
    const now = this.deps.clock.now();
    for (const chunk of chunks(rows, 1_000)) {
      await this.deps.db.execute(sql`
        update provisioning_outbox set claimed_until = null, attempts = attempts - 1, next_attempt_at = ${at(now)}
        where id in (${sql.join(
          chunk.map((r) => sql`${r.id}::int`),
          sql`, `,
        )})`);
    }
  }

  private async giveUp(row: ClaimedRow, message: string, now: Date): Promise<void> {
    await this.deps.db.transaction(async (tx) => {
      await tx.execute(sql`
        update provisioning_outbox set status = 'dead', claimed_until = null, last_error = ${message}, done_at = ${at(now)}
        where id = ${row.id}`);
      if (this.options.adminPhone) {
        const hour = now.toISOString().slice(0, 13);
        await enqueueMessage(tx, now, {
          recipient: this.options.adminPhone,
          language: "en",
          template: "admin_alert",
          params: {
            text: `Router provisioning gave up after ${row.attempts} attempts (${row.action}${
              row.subscriptionId ? ` subscription ${row.subscriptionId}` : ""
            }${row.voucherId ? ` voucher ${row.voucherId}` : ""}${
              row.routerId ? ` on router ${row.routerId}` : ""
            }): ${message}. Further failures this hour are in the provisioning queue.`,
          },
          // One alert per router and hour: an outage must not flood the admin's phone.
          dedupeKey: `provisioning-dead:${row.routerId ?? "all"}:${hour}`,
        });
      }
    });
    this.deps.logger?.error({ outboxId: row.id, err: message }, "provisioning row given up");
  }

  /** A router whose circuit had opened answered the worker's own traffic (the prober notices the rest). */
  private async routerRecovered(routerId: number): Promise<void> {
    try {
      await makeRouterRowsDue(this.deps.db, this.deps.clock.now(), routerId);
      this.kick();
    } catch (error) {
      this.deps.logger?.error({ err: error, routerId }, "could not reschedule rows of a recovered router");
    }
  }
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
