import { sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { type Db, queryRows } from "../db/client.ts";
import type { Logger } from "../logger.ts";
import type { RouterPool } from "./pool.ts";

/**
 * Rows for a router that cannot be reached wait at the longest back-off (minutes), so that a dead
 * router costs nothing. Nothing would notice its return until one of them fell due: the prober
 * asks each router seen down whether it answers, every `intervalMs`, and when one does, makes its
 * waiting rows due at once and wakes the worker.
 *
 * "Seen down" is this process's connection failing (its last attempt failed, circuit open or not),
 * or, for what another instance or an earlier run of this one left, the router's last recorded
 * error being newer than its last contact while rows wait for it.
 */
export class RouterProber {
  private timer: NodeJS.Timeout | null = null;
  private round: Promise<unknown> | null = null;
  private running = false;

  constructor(
    private readonly deps: { db: Db; clock: Clock; pool: RouterPool; logger?: Logger },
    private readonly intervalMs: number,
    /** Called after a round in which routers came back and their rows were made due. */
    private readonly onBack: (routerIds: number[]) => void,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.round;
  }

  /** One round: every router seen down is asked; returns those that answered. */
  async probeOnce(): Promise<number[]> {
    const { pool, logger } = this.deps;
    const candidates = new Set([...pool.unreachableRouterIds(), ...(await this.downInDatabase())]);
    const back: number[] = [];
    await Promise.all(
      [...candidates].map(async (routerId) => {
        try {
          await pool.probe(routerId);
        } catch (error) {
          logger?.debug({ routerId, err: error }, "router still unreachable");
          return;
        }
        await makeRouterRowsDue(this.deps.db, this.deps.clock.now(), routerId);
        back.push(routerId);
      }),
    );
    if (back.length > 0) {
      logger?.info({ routers: back }, "routers answer again: their queued changes are due now");
      this.onBack(back);
    }
    return back;
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.round = this.probeOnce()
        .catch((error) => this.deps.logger?.error({ err: error }, "router probe failed"))
        .finally(() => {
          this.round = null;
          this.schedule();
        });
    }, this.intervalMs);
    this.timer.unref();
  }

  private async downInDatabase(): Promise<number[]> {
    const now = this.deps.clock.now().toISOString();
    const rows = await queryRows<{ id: number }>(
      this.deps.db,
      sql`select r.id from routers r
          where r.last_error_at is not null and (r.last_contact_at is null or r.last_error_at >= r.last_contact_at)
            and exists (
              select 1 from provisioning_outbox o
              where (o.router_id = r.id or o.router_id is null) and o.status = 'pending' and o.next_attempt_at > ${now}::timestamptz
                and (o.claimed_until is null or o.claimed_until <= ${now}::timestamptz))`,
    );
    return rows.map((r) => Number(r.id));
  }
}

/**
 * A router is back: what waited for it is due now rather than at the end of its back-off. That
 * includes rows meant for every router (a voucher sold for any hotspot), which wait for the last one.
 */
export async function makeRouterRowsDue(db: Db, now: Date, routerId: number): Promise<void> {
  const at = now.toISOString();
  await db.execute(sql`
    update provisioning_outbox set next_attempt_at = ${at}::timestamptz
    where (router_id = ${routerId} or router_id is null) and status = 'pending' and next_attempt_at > ${at}::timestamptz
      and (claimed_until is null or claimed_until <= ${at}::timestamptz)`);
}
