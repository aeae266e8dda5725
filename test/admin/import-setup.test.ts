import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminBackgroundFinished, adminTelegramFrom } from "../../src/bots/admin/index.ts";
import { runCommand } from "../../src/cli/commands.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { adminImports, customers } from "../../src/db/schema/index.ts";
import { createSecretBox } from "../../src/lib/secret-box.ts";
import { billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { silent } from "../ussd/world.ts";
import {
  type AdminWorld,
  buttonsOf,
  documentUpdate,
  lastMenuIn,
  lastText,
  OWNER,
  startAdminWorld,
  startFakeTelegram,
} from "./world.ts";

/**
 * How the admin chat's import is set up: the countries it serves (as the CLI's import), and files an
 * instance that stopped left half-done, taken up when the bot starts.
 */

let database: Database;
let world: AdminWorld;
let dir: string;
const clock = new FakeClock("2026-06-01T06:00:00Z");
const HEADER = "account,name,phone,plan,status,expires,router,username,balance";

beforeAll(async () => {
  database = await createTestDatabase();
  dir = await mkdtemp(join(tmpdir(), "tandao-import-"));
  await createPlan(database.db, { code: "home-10", name: "Home 10", priceCents: 250_000 });
});
afterAll(async () => {
  await adminBackgroundFinished(database?.db);
  await world?.close();
  await database?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("an admin chat configured for Uganda (SERVED_COUNTRIES=UG)", () => {
  const FILE = [
    HEADER,
    "UG001,Okello Moses,0772123456,home-10,active,2026-06-30,,,0",
    "UG002,Nakato Grace,+256701234567,home-10,pending,2026-07-15,,,0",
    "KE001,Amina Wekesa,+254712000001,home-10,active,2026-06-30,,,0",
  ].join("\n");

  it("takes the Ugandan numbers and refuses the Kenyan one, as the CLI's import does", async () => {
    const { ctx } = billingContext(database.db, clock);
    const path = join(dir, "uganda.csv");
    await writeFile(path, FILE);
    const cliSays: string[] = [];
    await runCommand(
      { ctx, box: createSecretBox(Buffer.alloc(32, 9)), servedCountries: ["UG"] },
      { kind: "admin", id: "cli:test", channel: "cli" },
      ["customers", "import", path],
      { out: (line) => cliSays.push(line), secret: async () => "" },
    );
    const refusedByCli = cliSays.filter((line) => line.includes("refused:"));
    expect(refusedByCli).toEqual([
      "line 4 KE001: refused: phone +254712000001 is not in a served country (UG)",
    ]);

    world = await startAdminWorld(ctx, { servedCountries: ["UG"] });
    const document = world.fake.addDocument({ filename: "uganda.csv", bytes: FILE, mimeType: "text/csv" });
    await world.deliver(documentUpdate(OWNER, document));
    await adminBackgroundFinished(database.db);
    await world.sendQueued();
    const question = lastMenuIn(world.fake, OWNER);
    const report = world.fake.calls
      .map((c) => String(c.payload.text ?? ""))
      .find((text) => text.includes("dry run"));
    expect(report).toMatch(/3 rows — 2 new, 0 already here \(unchanged\), 1 refused/);
    for (const line of refusedByCli) expect(report).toContain(line);
    expect(buttonsOf(question)[0]?.text).toBe("✅ Import 2 customers");

    await world.press(OWNER, "Import 2 customers");
    await adminBackgroundFinished(database.db);
    await world.sendQueued();
    expect(lastText(world.fake, OWNER)).toMatch(/^✅ Imported 2 new customers from uganda\.csv/);
    const phones = (
      await database.db.select({ a: customers.accountNumber, p: customers.phone }).from(customers)
    )
      .map((c) => `${c.a} ${c.p}`)
      .sort();
    expect(phones).toEqual(["UG001 +256772123456", "UG002 +256701234567"]);
  });
});

describe("a file left half-done by an instance that stopped", () => {
  it("is checked once the admin bot starts; one another instance still holds is left to it", async () => {
    const { ctx } = billingContext(database.db, clock);
    const fake = await startFakeTelegram({ token: "888001:ADMIN-restart", username: "tandao_admin_bot" });
    const now = clock.now();
    const file = (name: string) =>
      fake.addDocument({
        filename: name,
        bytes: [HEADER, "AC900,Wanjiru Kamau,0712000900,home-10,active,2026-06-30,,,0"].join("\n"),
        mimeType: "text/csv",
      });
    const left = (name: string, leaseUntil: Date) => ({
      adminTelegramId: OWNER,
      chatId: String(OWNER),
      fileId: file(name).file_id,
      fileName: name,
      status: "requested" as const,
      leaseUntil,
      createdAt: now,
      updatedAt: now,
    });
    const [abandoned, held] = await database.db
      .insert(adminImports)
      .values([
        left("abandoned.csv", new Date(now.getTime() - 60_000)),
        left("held.csv", new Date(now.getTime() + 5 * 60_000)),
      ])
      .returning({ id: adminImports.id });

    const admin = await adminTelegramFrom({
      ctx,
      logger: silent,
      token: fake.token,
      secretToken: "restart-admin-secret-0123456789",
      ownerTelegramId: OWNER,
      apiRoot: fake.apiRoot,
    });
    try {
      await fake.waitFor((calls) =>
        calls.some(
          (c) =>
            c.method === "sendMessage" &&
            /^Import 1 customer from abandoned\.csv\?/.test(String(c.payload.text)),
        ),
      );
      await adminBackgroundFinished(database.db);
      const status = async (id: number) =>
        (await database.db.select().from(adminImports).where(eq(adminImports.id, id)))[0]?.status;
      expect(await status(abandoned!.id)).toBe("checked");
      expect(await status(held!.id)).toBe("requested");
      expect(fake.calls.some((c) => String(c.payload.text ?? "").includes("held.csv"))).toBe(false);
    } finally {
      await admin.stop();
      await fake.close();
    }
  });
});
