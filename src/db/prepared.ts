import type { Executor } from "./client.ts";

/**
 * A query built once per database handle and then run with fresh values (drizzle placeholders).
 * Building drizzle's SQL for a wide select costs the app more CPU than the server spends running
 * it, and the menu's account and quote screens run such selects on every visit. Handles are held
 * weakly, so a transaction's copy goes when the transaction does.
 */
export function builtOncePerHandle<Query>(build: (db: Executor) => Query): (db: Executor) => Query {
  const built = new WeakMap<Executor, Query>();
  return (db) => {
    let query = built.get(db);
    if (query === undefined) {
      query = build(db);
      built.set(db, query);
    }
    return query;
  };
}
