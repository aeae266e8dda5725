import { sql } from "drizzle-orm";
import { afterAll, describe, expect, it } from "vitest";
import { type Database, queryRows } from "../src/db/client.ts";
import { createTestDatabase, onRealPostgres } from "./support/db.ts";

describe.runIf(onRealPostgres())("queries on PostgreSQL", () => {
  let database: Database;
  afterAll(async () => {
    await database?.close();
  });

  const prepared = async () =>
    (
      await queryRows<{ statement: string }>(
        database.db,
        sql`select statement from pg_prepared_statements where statement not like '%pg_prepared_statements%'`,
      )
    ).map((r) => r.statement);

  it("are prepared once per connection and reused, except texts with long lists built in", async () => {
    database = await createTestDatabase({ maxConnections: 1 });
    for (const n of [1, 2, 3]) {
      const [row] = await queryRows<{ doubled: number }>(database.db, sql`select ${n}::int * 2 as doubled`);
      expect(row!.doubled).toBe(n * 2);
    }
    await database.db.transaction(async (tx) => {
      await queryRows(tx, sql`select ${"in a transaction"}::text as label`);
    });
    // More parameters than a prepared text may have (client.ts).
    const ids = Array.from({ length: 150 }, (_, i) => i);
    const [listed] = await queryRows<{ n: number }>(
      database.db,
      sql`select count(*)::int as n from generate_series(0, 200) g where g in (${sql.join(
        ids.map((id) => sql`${id}`),
        sql`, `,
      )})`,
    );
    expect(listed!.n).toBe(150);

    const statements = await prepared();
    expect(statements.filter((s) => s.includes("* 2 as doubled"))).toHaveLength(1);
    expect(statements.filter((s) => s.includes("as label"))).toHaveLength(1);
    expect(statements.filter((s) => s.includes("generate_series"))).toHaveLength(0);
  });
});
