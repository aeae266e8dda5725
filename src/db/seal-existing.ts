import { sql } from "drizzle-orm";
import { type Executor, queryRows } from "./client.ts";
import { requireBox, sealedPrefix } from "./sealed.ts";

/**
 * Seals the PPPoE passwords still stored in the clear (written before sealing existed, or by a
 * bulk import in SQL), a batch at a time; run at start. Returns how many it sealed.
 */
export async function sealPlainSecrets(db: Executor): Promise<number> {
  const secretBox = requireBox();
  let sealed = 0;
  for (;;) {
    const rows = await queryRows<{ id: number; network_password: string }>(
      db,
      sql`select id, network_password from subscriptions where network_password not like ${`${sealedPrefix}%`} limit 500`,
    );
    if (rows.length === 0) return sealed;
    const batch = JSON.stringify(
      rows.map((r) => ({ id: Number(r.id), sealed: secretBox.seal(r.network_password) })),
    );
    await db.execute(sql`
      update subscriptions s set network_password = b.sealed
      from jsonb_to_recordset(${batch}::jsonb) as b(id int, sealed text)
      where s.id = b.id and s.network_password not like ${`${sealedPrefix}%`}`);
    sealed += rows.length;
  }
}
