import { eq, sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { type DatabaseMode, databaseMode } from "./schema/index.ts";

/** A sandbox start refused: the database holds a production ISP's data. */
export class DatabaseModeError extends Error {
  override readonly name = "DatabaseModeError";
}

/**
 * Records what this database serves at its first start, and refuses a sandbox on a production
 * one: started without its outside credentials (an env file left behind, a renamed one), the app
 * would run its fakes against real subscribers (the fake M-Pesa "paying" their pending prompts,
 * the fake SMS gateway emptying their queue). A sandbox that goes live becomes production.
 */
export async function claimDatabaseMode(db: Db, mode: DatabaseMode, now: Date): Promise<DatabaseMode> {
  await db.execute(
    sql`insert into database_mode (id, mode, since) values (1, ${mode}, ${now.toISOString()}::timestamptz)
        on conflict (id) do nothing`,
  );
  const [row] = await db.select().from(databaseMode).where(eq(databaseMode.id, 1));
  const recorded = row?.mode ?? mode;
  if (mode === "sandbox" && recorded === "production")
    throw new DatabaseModeError(
      "this database holds a production ISP's data, and with no outside credentials set (M-Pesa, SMS, " +
        "chats) Tandao would start in sandbox mode and run its fakes against it. Set the production " +
        "settings (the env file), or point DATABASE_URL / DATA_DIR at another database to try Tandao",
    );
  if (mode === "production" && recorded === "sandbox")
    await db.update(databaseMode).set({ mode, since: now }).where(eq(databaseMode.id, 1));
  return recorded;
}
