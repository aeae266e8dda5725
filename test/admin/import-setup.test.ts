import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminBackgroundFinished } from "../../src/bots/admin/index.ts";
import { runCommand } from "../../src/cli/commands.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { customers } from "../../src/db/schema/index.ts";
import { createSecretBox } from "../../src/lib/secret-box.ts";
import { billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  type AdminWorld,
  buttonsOf,
  documentUpdate,
  lastMenuIn,
  lastText,
  OWNER,
  startAdminWorld,
} from "./world.ts";

/** How the admin chat's import is set up: the countries it serves, as the CLI's import. */

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
