import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Actor } from "../src/billing/context.ts";
import { MAX_IMPORT_BYTES } from "../src/billing/import.ts";
import { type CliContext, runCommand, shillingsToCents } from "../src/cli/commands.ts";
import { FakeClock } from "../src/clock.ts";
import { type Database, openDatabase } from "../src/db/client.ts";
import { admins, auditLog, customers, plans, provisioningOutbox, routers } from "../src/db/schema/index.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";
import { lastText, startAdminWorld } from "./admin/world.ts";
import { billingContext } from "./support/billing.ts";
import { createTestDatabase } from "./support/db.ts";

let database: Database;
let cli: CliContext;
const clock = new FakeClock("2026-06-01T06:00:00Z");
const actor: Actor = { kind: "admin", id: "cli:test", channel: "cli" };
const box = createSecretBox(Buffer.alloc(32, 9));

beforeAll(async () => {
  database = await createTestDatabase();
  cli = { ctx: billingContext(database.db, clock).ctx, box, servedCountries: ["KE"] };
});
afterAll(async () => {
  await database?.close();
});

async function run(line: string[], password = "") {
  const out: string[] = [];
  await runCommand(cli, actor, line, { out: (l) => out.push(l), secret: async () => password });
  return out;
}

describe("the command line", () => {
  it("reads shillings as integer cents and refuses anything else", () => {
    expect(shillingsToCents("2500")).toBe(250_000);
    expect(shillingsToCents("19.9")).toBe(1_990);
    expect(shillingsToCents("0.05")).toBe(5);
    for (const bad of ["-1", "1,000", "2.345", "1e3", "", "abc"])
      expect(() => shillingsToCents(bad)).toThrow();
  });

  it("adds a plan, lists it, and changes its price and speed (the routers get the new profile)", async () => {
    expect(
      await run([
        "plans",
        "add",
        "--code",
        "home-10",
        "--name",
        "Home 10",
        "--name-sw",
        "Nyumbani 10",
        "--kind",
        "pppoe",
        "--price",
        "2500",
        "--unit",
        "months",
        "--speed",
        "5M/10M",
      ]),
    ).toEqual([expect.stringMatching(/^plan home-10 created/)]);
    expect((await run(["plans", "list"])).join("\n")).toContain(
      "home-10\tpppoe\tHome 10\tKES 2,500 / 1 month\t5M/10M",
    );

    await run(["plans", "edit", "home-10", "--price", "2800", "--speed", "8M/15M"]);
    const [plan] = await database.db.select().from(plans).where(eq(plans.code, "home-10"));
    expect(plan).toMatchObject({ priceCents: 280_000, rateLimit: "8M/15M", nameSw: "Nyumbani 10" });
    const pushed = await database.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.action, "ensure_profile"));
    // A new speed: the routers also reconnect the plan's online subscribers, so it takes effect now.
    expect(pushed.map((row) => row.payload)).toContainEqual({ planId: plan!.id, rateLimitChanged: true });
    const audited = await database.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.entity, "plan"), eq(auditLog.entityId, String(plan!.id))));
    expect(audited.map((a) => a.action)).toEqual(["plan.created", "plan.updated"]);
    expect(audited[1]?.details).toMatchObject({
      changed: { priceCents: 280_000 },
      before: { priceCents: 250_000 },
    });
  });

  it("refuses a bad plan and changes nothing", async () => {
    const before = await database.db.select().from(plans);
    for (const line of [
      [
        "plans",
        "add",
        "--code",
        "Bad Code",
        "--name",
        "x",
        "--kind",
        "pppoe",
        "--price",
        "10",
        "--unit",
        "months",
        "--speed",
        "1M/1M",
      ],
      [
        "plans",
        "add",
        "--code",
        "cheap",
        "--name",
        "x",
        "--kind",
        "pppoe",
        "--price",
        "-5",
        "--unit",
        "months",
        "--speed",
        "1M/1M",
      ],
      [
        "plans",
        "add",
        "--code",
        "fast",
        "--name",
        "x",
        "--kind",
        "pppoe",
        "--price",
        "10",
        "--unit",
        "months",
        "--speed",
        "fast",
      ],
      [
        "plans",
        "add",
        "--code",
        "home-10",
        "--name",
        "x",
        "--kind",
        "pppoe",
        "--price",
        "10",
        "--unit",
        "months",
        "--speed",
        "1M/1M",
      ],
      ["plans", "edit", "nope", "--price", "10"],
    ])
      await expect(run(line)).rejects.toThrow();
    // What edit cannot change is refused, not ignored beside what it can.
    await expect(run(["plans", "edit", "home-10", "--price", "30", "--every", "3"])).rejects.toThrow(
      /plans edit changes --name, --name-sw, --price, --speed, --cap-gb and --active/,
    );
    await expect(run(["plans", "edit", "home-10"])).rejects.toThrow(/say what to change/);
    expect(await database.db.select().from(plans)).toEqual(before);
  });

  it("refuses a customers file too big to import, in the same words as the chat, and imports nothing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tandao-cli-import-"));
    const file = join(dir, "customers.csv");
    try {
      await writeFile(file, `name,phone\n${"x".repeat(MAX_IMPORT_BYTES)}`);
      const before = await database.db.select().from(customers);
      await expect(run(["customers", "import", file, "--commit"])).rejects.toThrow(
        /customers\.csv is 5\.0 MB, over 5\.0 MB: split it/,
      );
      expect(await database.db.select().from(customers)).toEqual(before);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("adds a router with its password sealed, never stored or printed as typed", async () => {
    const out = await run(
      ["routers", "add", "--name", "kibera-1", "--host", "10.0.0.1", "--user", "tandao"],
      "s3cret-pass",
    );
    expect(out.join("\n")).not.toContain("s3cret-pass");
    const [router] = await database.db.select().from(routers).where(eq(routers.name, "kibera-1"));
    expect(router?.passwordEncrypted).not.toContain("s3cret-pass");
    expect(box.open(router!.passwordEncrypted)).toBe("s3cret-pass");
    await expect(
      run(["routers", "add", "--name", "kibera-2", "--host", "10.0.0.2", "--user", "tandao"], ""),
    ).rejects.toThrow("password");
  });

  it("adds and removes an admin whose Telegram id has ten digits, as newer accounts' ids do", async () => {
    await run(["admins", "add", "7012345678", "support", "Baraka"]);
    expect(await run(["admins", "list"])).toContain("7012345678\tsupport\tBaraka");
    await run(["admins", "remove", "7012345678"]);
    expect(await run(["admins", "list"])).not.toContain("7012345678\tsupport\tBaraka");
  });

  it("manages admins and adds a customer on a plan and router", async () => {
    await run(["admins", "add", "5551", "owner", "Achieng"]);
    await run(["admins", "add", "5552", "support"]);
    expect(await run(["admins", "list"])).toEqual(["5551\towner\tAchieng", "5552\tsupport\t"]);
    await run(["admins", "remove", "5552"]);
    expect(await database.db.select({ id: admins.telegramId }).from(admins)).toEqual([{ id: 5551 }]);
    await expect(run(["admins", "add", "5553", "boss"])).rejects.toThrow();

    const out = await run([
      "customers",
      "add",
      "--name",
      "Amina Wekesa",
      "--phone",
      "0712 000 111",
      "--plan",
      "home-10",
      "--router",
      "kibera-1",
    ]);
    expect(out[0]).toMatch(/^customer TD\d+ added: Amina Wekesa, Home 10$/);
    const [amina] = await database.db.select().from(customers).where(eq(customers.name, "Amina Wekesa"));
    expect(amina?.phone).toBe("+254712000111");
    await expect(
      run(["customers", "add", "--name", "Far Away", "--phone", "+255712000111", "--plan", "home-10"]),
    ).rejects.toThrow("not a phone number this ISP serves");
  });
});

describe("npm run cli", () => {
  it("sets up a fresh embedded database (router, plan, owner), and that owner can then use the admin bot", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "tandao-cli-"));
    try {
      const env = {
        ...process.env,
        DATA_DIR: dataDir,
        DATABASE_URL: "",
        TANDAO_MODE: "",
        TANDAO_ROUTER_PASSWORD: "router-pass-1",
      };
      const exec = promisify(execFile);
      const cli = (args: string[]) => exec(process.execPath, ["bin/tandao.mjs", ...args], { env });
      await cli(["migrate"]);
      await cli(["routers", "add", "--name", "estate-1", "--host", "192.0.2.10", "--user", "tandao"]);
      await cli([
        "plans",
        "add",
        "--code",
        "day-1",
        "--name",
        "Day",
        "--kind",
        "hotspot",
        "--price",
        "50",
        "--unit",
        "days",
        "--speed",
        "2M/4M",
      ]);
      await cli(["admins", "add", "424242", "owner", "Wanjiru"]);
      expect((await cli(["plans", "list"])).stdout).toContain("day-1\thotspot\tDay\tKES 50 / 1 day\t2M/4M");
      const refused = await cli(["plans", "edit", "day-1", "--price", "abc"]).catch(
        (error: { code: number; stderr: string }) => error,
      );
      expect(refused).toMatchObject({
        code: 1,
        stderr: expect.stringContaining("not an amount of shillings"),
      });

      const opened = await openDatabase({ dataDir });
      try {
        const world = await startAdminWorld({ ...billingContext(opened.db, clock).ctx });
        try {
          await world.say(424242, "/routers");
          expect(lastText(world.fake, 424242)).toContain("estate-1");
          await world.say(424242, "/plans");
          expect(lastText(world.fake, 424242)).toContain("Day");
        } finally {
          await world.close();
        }
      } finally {
        await opened.close();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
    // Six CLI processes, each starting Node and the embedded database: ~20 s alone, more beside the
    // rest of the suite on two cores.
  }, 120_000);
});
