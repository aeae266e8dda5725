import { sql } from "drizzle-orm";
import postgres from "postgres";
import { type Db, queryRows } from "../../src/db/client.ts";

/**
 * Tools for tests that pin an interleaving on PostgreSQL: another session holds a row lock while
 * the code under test runs up to it, and the test waits until the sessions it expects are queued.
 */

/** Sessions of `db`'s database waiting for a lock another session holds. */
export async function sessionsWaitingForLocks(db: Db): Promise<number> {
  const [row] = await queryRows<{ n: number }>(
    db,
    sql`select count(*)::int as n from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock'`,
  );
  return row?.n ?? 0;
}

/** For `eventually`: true once at least `n` sessions wait for a lock. */
export const waitingForLocks = (db: Db, n: number) => async () =>
  (await sessionsWaitingForLocks(db)) >= n ? true : undefined;

export interface HeldLock {
  /** Lets the lock go and waits for the holding session's end; calling it again is harmless. */
  release(): Promise<void>;
}

/**
 * Runs `lock` (a `select … for update`, say) in a transaction of a session of its own on the
 * database at `url` and keeps that transaction open until `release()`. Resolves once it holds.
 */
export async function holdLock(
  url: string,
  lock: (tx: postgres.TransactionSql) => Promise<unknown>,
): Promise<HeldLock> {
  const other = postgres(url, { max: 1 });
  let letGo = () => {};
  const released = new Promise<void>((resolve) => {
    letGo = resolve;
  });
  let holds = () => {};
  const holding = new Promise<void>((resolve) => {
    holds = resolve;
  });
  const transaction = other.begin(async (tx) => {
    await lock(tx);
    holds();
    await released;
  });
  try {
    await Promise.race([holding, transaction]);
  } catch (error) {
    await other.end();
    throw error;
  }
  let ended: Promise<void> | undefined;
  return {
    release() {
      letGo();
      ended ??= transaction.then(
        () => other.end(),
        async (error: unknown) => {
          await other.end();
          throw error;
        },
      );
      return ended;
    },
  };
}
