import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Database } from "../../src/db/client.ts";
import { routers } from "../../src/db/schema/index.ts";
import { createSecretBox, loadSecretKey, parseSecretKey } from "../../src/lib/secret-box.ts";
import { listRouters, testRouter } from "../../src/network/routers.ts";
import { createTestDatabase } from "../support/db.ts";
import { box, emulatedRouter } from "./support.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("secret box", () => {
  it("seals and opens; a tampered value or another key fails", () => {
    const sealed = box.seal("router-pass");
    expect(sealed).not.toContain("router-pass");
    expect(box.open(sealed)).toBe("router-pass");
    const parts = sealed.split(":");
    parts[3] = Buffer.from("garbage!").toString("base64");
    expect(() => box.open(parts.join(":"))).toThrow();
    expect(() => createSecretBox(Buffer.alloc(32, 7)).open(sealed)).toThrow();
  });

  it("reads hex or base64 keys and, in sandbox, keeps a generated key in DATA_DIR with mode 0600", () => {
    expect(parseSecretKey("ab".repeat(32))).toHaveLength(32);
    expect(parseSecretKey(Buffer.alloc(32, 1).toString("base64"))).toHaveLength(32);
    expect(() => parseSecretKey("short")).toThrow();
    const dir = mkdtempSync(path.join(tmpdir(), "tandao-key-"));
    const first = loadSecretKey({ dataDir: dir, sandbox: true });
    expect(statSync(path.join(dir, "secret.key")).mode & 0o777).toBe(0o600);
    expect(loadSecretKey({ dataDir: dir, sandbox: true }).equals(first)).toBe(true);
    expect(readFileSync(path.join(dir, "secret.key"), "utf8").trim()).toBe(first.toString("hex"));
    expect(() => loadSecretKey({ dataDir: dir, sandbox: false })).toThrow(/SECRET_KEY/);
  });
});

describe("router registry", () => {
  it("stores the password sealed, tests the connection, reports health and queue depth", async () => {
    const { emulator, routerId } = await emulatedRouter(database.db, "kitengela");
    try {
      const [row] = await database.db.select().from(routers);
      expect(row?.passwordEncrypted).not.toContain("pw-kitengela");
      const ok = await testRouter(database.db, box, routerId, () => new Date());
      expect(ok).toMatchObject({ ok: true, identity: "kitengela", boardName: "CHR" });
      expect(ok.version).toMatch(/^7\.18/);
      await emulator.stop();
      const down = await testRouter(database.db, box, routerId, () => new Date());
      expect(down.ok).toBe(false);
      const [health] = await listRouters(database.db);
      expect(health).toMatchObject({ name: "kitengela", queueDepth: 0 });
      expect(health?.lastContactAt).not.toBeNull();
      expect(health?.lastError).toMatch(/cannot connect/);
    } finally {
      await emulator.stop();
    }
  });
});
