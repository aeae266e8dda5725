import { sql } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import { queryRows } from "../../src/db/client.ts";
import { Inbox } from "../../src/payments/inbox.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { capturingLogger } from "../support/logs.ts";

/**
 * The inbox where it has no disk to spool to (the Cloudflare Worker): a request the database could
 * not take at once is tried again, and one it never takes is left in the error log for an admin.
 */

let database: TestDatabase;
const clock = new FakeClock("2026-04-01T08:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
});
afterEach(async () => {
  await database.db.execute(sql`drop trigger if exists test_refuse_callbacks on mpesa_callbacks`);
});
afterAll(async () => {
  await database?.close();
});

/** The next `count` inserts into the inbox fail, as while the database is away. */
async function refuseInserts(count: number) {
  await database.db.execute(sql`drop sequence if exists test_refused_callbacks`);
  await database.db.execute(sql`create sequence test_refused_callbacks`);
  await database.db.execute(
    sql.raw(`create or replace function test_refuse_callback() returns trigger language plpgsql as $$
      begin
        if nextval('test_refused_callbacks') <= ${count} then
          raise exception 'database away (test)';
        end if;
        return new;
      end $$`),
  );
  await database.db.execute(sql`create trigger test_refuse_callbacks before insert on mpesa_callbacks
    for each row execute function test_refuse_callback()`);
}

const confirmation = JSON.stringify({
  TransID: "UAB1C2D3E4",
  TransAmount: "1500.00",
  BillRefNumber: "TD00042",
});

describe("an inbox without a spool", () => {
  it("stores a request the database refused at first on a further try", async () => {
    const { logger } = capturingLogger();
    const inbox = new Inbox({
      ctx: billingContext(database.db, clock).ctx,
      logger,
      storeRetryPausesMs: [0, 0],
    });
    await refuseInserts(2);
    const id = await inbox.store({ kind: "c2b_confirmation", text: confirmation });
    expect(id).toEqual(expect.any(Number));
    const [row] = await queryRows<{ raw: string }>(
      database.db,
      sql`select raw from mpesa_callbacks where id = ${id}`,
    );
    expect(row!.raw).toBe(confirmation);
  });

  it("gives up after its tries with the body in the error log, for an admin to credit", async () => {
    const { lines, logger } = capturingLogger();
    const inbox = new Inbox({
      ctx: billingContext(database.db, clock).ctx,
      logger,
      storeRetryPausesMs: [0, 0],
    });
    await refuseInserts(3);
    await expect(inbox.store({ kind: "c2b_confirmation", text: confirmation })).rejects.toThrow();
    const logged = lines.map((line) => JSON.parse(line) as { level: number; msg: string; body?: string });
    const error = logged.find((l) => l.level >= 50)!;
    expect(error.msg).toMatch(/could not be stored/);
    expect(error.body).toBe(confirmation);
  });
});
