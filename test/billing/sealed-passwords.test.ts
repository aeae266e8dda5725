import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queryRows } from "../../src/db/client.ts";
import { subscriptions } from "../../src/db/schema/index.ts";
import { sealPlainSecrets } from "../../src/db/seal-existing.ts";
import { activeSubscriber, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

describe("PPPoE passwords at rest", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database?.close();
  });

  it("are stored sealed, and read back as the password through the schema", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { subscription } = await activeSubscriber(ctx, plan.id);
    const [stored] = await queryRows<{ network_password: string }>(
      database.db,
      sql`select network_password from subscriptions where id = ${subscription.id}`,
    );
    const [read] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(read!.networkPassword).toMatch(/^[A-Za-z0-9]{6,}$/);
    expect(stored!.network_password).toMatch(/^v1:/);
    expect(stored!.network_password).not.toContain(read!.networkPassword);
  });

  it("written in the clear before (or by a bulk import), are sealed at start", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { subscription } = await activeSubscriber(ctx, plan.id);
    await database.db.execute(
      sql`update subscriptions set network_password = 'plain-secret-42' where id = ${subscription.id}`,
    );
    expect(await sealPlainSecrets(database.db)).toBeGreaterThanOrEqual(1);
    const [stored] = await queryRows<{ network_password: string }>(
      database.db,
      sql`select network_password from subscriptions where id = ${subscription.id}`,
    );
    expect(stored!.network_password).toMatch(/^v1:/);
    const [read] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(read!.networkPassword).toBe("plain-secret-42");
    expect(await sealPlainSecrets(database.db)).toBe(0);
  });
});
