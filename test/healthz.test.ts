import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../src/app.ts";
import type { Database } from "../src/db/client.ts";
import { createLogger } from "../src/logger.ts";
import { createTestDatabase } from "./support/db.ts";

describe("GET /healthz", () => {
  let database: Database;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database.close();
  });

  it("answers 200 when the database answers", async () => {
    const app = createApp({ db: database.db, logger: createLogger("silent") });
    const response = await app.request("/healthz");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok", database: "ok", mode: "sandbox" });
  });

  it("answers 503 when the database is gone", async () => {
    const broken = await createTestDatabase();
    await broken.close();
    const app = createApp({ db: broken.db, logger: createLogger("silent") });
    const response = await app.request("/healthz");
    expect(response.status).toBe(503);
  });
});
