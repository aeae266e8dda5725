import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../src/db/client.ts";
import { claimDatabaseMode, DatabaseModeError } from "../src/db/mode-guard.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

/**
 * A sandbox (fakes for M-Pesa, SMS and chats) must never start on a production ISP's database:
 * an env file left behind would otherwise have the fake M-Pesa "pay" real subscribers' prompts.
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("what a database serves", () => {
  it("is claimed by its first start; a sandbox going live becomes production, which no sandbox starts on", async () => {
    const at = new Date("2026-12-01T08:00:00Z");
    expect(await claimDatabaseMode(database.db, "sandbox", at)).toBe("sandbox");
    expect(await claimDatabaseMode(database.db, "sandbox", at)).toBe("sandbox");
    expect(await claimDatabaseMode(database.db, "production", at)).toBe("sandbox");
    expect(await claimDatabaseMode(database.db, "production", at)).toBe("production");
    await expect(claimDatabaseMode(database.db, "sandbox", at)).rejects.toBeInstanceOf(DatabaseModeError);
  });

  it("the app started without its production settings on a production database stops, naming why", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tandao-mode-"));
    try {
      const production = await openDatabase({ dataDir: dir });
      await production.migrate();
      await claimDatabaseMode(production.db, "production", new Date());
      await production.close();

      // No outside credential in the environment: sandbox mode.
      const env = Object.fromEntries(
        Object.entries(process.env).filter(
          ([k]) => !/^(MPESA_|AT_|USSD_|TELEGRAM_|WHATSAPP_|DATABASE_URL|TANDAO_MODE)/.test(k),
        ),
      );
      const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
        env: { ...env, PORT: "0", DATA_DIR: dir, LOG_LEVEL: "warn" },
        stdio: ["ignore", "ignore", "pipe"],
      });
      let errors = "";
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
        errors += chunk;
      });
      const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
      expect(code).toBe(1);
      expect(errors).toMatch(/Tandao did not start: this database holds a production ISP's data/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
