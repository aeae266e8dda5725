import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import { desiredProfile } from "../../src/network/desired.ts";
import { claimDueRows } from "../../src/network/outbox-claim.ts";
import { OutboxOutcomes } from "../../src/network/outbox-outcomes.ts";
import { addRouter } from "../../src/network/routers.ts";
import { leaseProfiles, reconcileLeaseMs, releaseTargets } from "../../src/network/targets.ts";
import { createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { box } from "./support.ts";

/**
 * A delivery that outlives its lease (a router stalling) finds its row claimed again by another
 * worker. Its outcome must not overwrite that worker's lease: with the lease gone, a third worker
 * could claim the row while the second still writes it to the router.
 */

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const LEASE_MS = 120_000;

/**
 * A router of its own (never called: only the outbox is under test), a plan, and a workers' view of
 * its rows; `queued` puts one profile row of the plan in the outbox.
 */
async function routerRows(clock: FakeClock, maxAttempts = 2) {
  const { id: routerId } = await addRouter(database.db, box, {
    name: `late-${uniquePhone()}`,
    host: "127.0.0.1",
    port: 1,
    username: "tandao",
    password: "pw",
  });
  const plan = await createPlan(database.db, { priceCents: 100_000 });
  const deps = { db: database.db, clock };
  return {
    routerId,
    plan,
    deps,
    outcomes: new OutboxOutcomes(deps, { maxAttempts, backoffBaseMs: 1_000, backoffMaxMs: 60_000 }),
    claim: async () =>
      (await claimDueRows(deps, { leaseMs: LEASE_MS, batchSize: 10 }, [])).filter(
        (r) => r.routerId === routerId,
      ),
    queued: () =>
      database.db.execute(sql`
        insert into provisioning_outbox (router_id, action, payload, next_attempt_at, created_at)
        values (${routerId}, 'ensure_profile', ${JSON.stringify({ planId: plan.id })}::jsonb,
          ${clock.now().toISOString()}::timestamptz, ${clock.now().toISOString()}::timestamptz)`),
  };
}

describe("an outcome written after its row's lease ran out", () => {
  it("leaves the row to the worker that claimed it since; that worker's outcome counts", async () => {
    const clock = new FakeClock(new Date("2026-05-02T08:00:00Z"));
    const { routerId, outcomes, claim, queued } = await routerRows(clock, 2);
    await queued();
    const rowOf = async () => {
      const [row] = await queryRows<{
        status: string;
        claimed_until: Date | string | null;
        attempts: number;
      }>(
        database.db,
        sql`select status, claimed_until, attempts from provisioning_outbox
            where router_id = ${routerId}`,
      );
      return { ...row!, claimed_until: row!.claimed_until && new Date(row!.claimed_until).getTime() };
    };

    const [first] = await claim();
    clock.advance(LEASE_MS + 1_000);
    const [second] = await claim();
    expect(second?.id).toBe(first?.id);
    const secondLease = clock.now().getTime() + LEASE_MS;

    // The first worker's outcomes, late: done, failed, failed for the last time, handed back.
    await outcomes.succeeded([first!]);
    await outcomes.failed([{ row: first!, error: new Error("router stalled"), owedDrops: [] }]);
    await outcomes.failed([{ row: { ...first!, attempts: 2 }, error: new Error("gave up"), owedDrops: [] }]);
    await outcomes.release([first!]);
    expect(await rowOf()).toEqual({ status: "pending", claimed_until: secondLease, attempts: 2 });

    await outcomes.succeeded([second!]);
    expect(await rowOf()).toMatchObject({ status: "done", claimed_until: null });
  });

  it("hands the session drops it still owes to a row of their own, behind the new holder", async () => {
    const clock = new FakeClock(new Date("2026-05-02T08:30:00Z"));
    const { routerId, plan, outcomes, claim, queued } = await routerRows(clock, 2);
    await queued();
    const [first] = await claim();
    clock.advance(LEASE_MS + 1_000);
    const [second] = await claim();
    // Late: the profile was changed but the sessions on it were not dropped yet; then, given up.
    await outcomes.failed([{ row: first!, error: new Error("router stalled"), owedDrops: ["alice"] }]);
    await outcomes.failed([
      { row: { ...first!, attempts: 2 }, error: new Error("gave up"), owedDrops: ["bob"] },
    ]);
    const rows = await queryRows<{
      id: number;
      status: string;
      payload: { planId: number; dropSessions?: string[] };
    }>(
      database.db,
      sql`select id, status, payload from provisioning_outbox where router_id = ${routerId} order by id`,
    );
    expect(rows.map((r) => [r.status, r.payload.planId, r.payload.dropSessions ?? []])).toEqual([
      ["pending", plan.id, []],
      ["pending", plan.id, ["alice"]],
      ["pending", plan.id, ["bob"]],
    ]);
    // They wait for the holder; once it is done, the next claim takes the newest, owing both drops.
    expect(await claim()).toEqual([]);
    await outcomes.succeeded([second!]);
    const [next] = await claim();
    expect(next?.id).toBe(rows[2]!.id);
    expect(new Set(next?.payload.dropSessions as string[])).toEqual(new Set(["alice", "bob"]));
  });

  it("still counts when no one took the row over", async () => {
    const clock = new FakeClock(new Date("2026-05-02T09:00:00Z"));
    const { outcomes, claim, queued } = await routerRows(clock, 5);
    await queued();
    const [row] = await claim();
    clock.advance(LEASE_MS + 1_000);
    await outcomes.succeeded([row!]);
    const [after] = await queryRows<{ status: string }>(
      database.db,
      sql`select status from provisioning_outbox where id = ${row!.id}`,
    );
    expect(after?.status).toBe("done");
  });
});

describe("a reconciliation that outlived its lease", () => {
  it("neither deletes nor frees a lease row a worker has claimed since", async () => {
    const clock = new FakeClock(new Date("2026-05-02T10:00:00Z"));
    const { routerId, deps, plan: written, claim } = await routerRows(clock);
    const unfinished = await createPlan(database.db, { priceCents: 120_000 });
    const leases = await leaseProfiles(deps, routerId, [desiredProfile(written), desiredProfile(unfinished)]);
    expect(leases.rows.size).toBe(2);
    clock.advance(reconcileLeaseMs + 1_000);
    // The reconciliation stalls past its lease: a worker takes both rows over.
    const claimed = await claim();
    expect(claimed).toHaveLength(2);
    await releaseTargets(deps, leases, new Set([...leases.rows.keys()].slice(1)));
    const rows = await queryRows<{ claimed_until: Date | string | null }>(
      database.db,
      sql`select claimed_until from provisioning_outbox where router_id = ${routerId} and status = 'pending'`,
    );
    expect(rows.map((r) => r.claimed_until && new Date(r.claimed_until).getTime())).toEqual([
      claimed[0]!.leaseEndsAt,
      claimed[1]!.leaseEndsAt,
    ]);
  });
});
