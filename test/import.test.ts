import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../src/billing/context.ts";
import { exportCsv } from "../src/billing/export.ts";
import {
  analyseCustomerImport,
  type ImportReport,
  importCustomers,
  MAX_IMPORT_BYTES,
} from "../src/billing/import.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { type CliContext, runCommand } from "../src/cli/commands.ts";
import { FakeClock } from "../src/clock.ts";
import { type Db, queryRows } from "../src/db/client.ts";
import {
  auditLog,
  customers,
  invoices,
  ledgerEntries,
  plans,
  provisioningOutbox,
  routers,
  subscriptions,
} from "../src/db/schema/index.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";
import { admin, billingContext, count, createPlan, ledgerSum } from "./support/billing.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

const HEADER = "account,name,phone,plan,status,expires,router,username,balance";
const clock = new FakeClock("2026-06-01T06:00:00Z");
const databases: TestDatabase[] = [];
let ctx: BillingContext;
let existingAccount: string;
let kiberaId: number;

async function world(): Promise<BillingContext> {
  const database = await createTestDatabase();
  databases.push(database);
  await createPlan(database.db, { code: "home-10", name: "Home 10", priceCents: 250_000 });
  await createPlan(database.db, { code: "home-20", name: "Home 20", priceCents: 400_000 });
  const [router] = await database.db
    .insert(routers)
    .values({ name: "kibera-1", host: "10.0.0.1", username: "api", passwordEncrypted: "x" })
    .returning();
  kiberaId = router!.id;
  return billingContext(database.db, clock).ctx;
}

beforeAll(async () => {
  ctx = await world();
  const [plan] = await ctx.db.select().from(plans).where(eq(plans.code, "home-10"));
  const created = await createCustomerWithSubscription(ctx, admin, {
    name: "Already Here",
    phone: "+254712999999",
    planId: plan!.id,
  });
  existingAccount = created.customer.accountNumber;
});
afterAll(async () => {
  for (const d of databases) await d.close();
});

const good = [
  "AC001,Amina Wekesa,0712000001,home-10,active,2026-06-30,kibera-1,,-1500.50",
  "AC002,Brian Otieno,+254712000002,home-20,suspended,2026-05-31,,brian.o,0",
  "AC003,Chebet Kirui,254712000003,home-10,pending,2026-07-15,,,250",
];

function tableCount(db: Db, table: string) {
  return count(db, sql`select count(*)::int as n from ${sql.identifier(table)}`);
}

async function snapshot(db: Db) {
  return {
    customers: await tableCount(db, "customers"),
    subscriptions: await tableCount(db, "subscriptions"),
    ledger: await tableCount(db, "ledger_entries"),
    outbox: await tableCount(db, "provisioning_outbox"),
  };
}

function problemsByLine(report: ImportReport) {
  return Object.fromEntries(
    report.rows.filter((r) => r.outcome === "refused").map((r) => [r.line, r.problems.map((p) => p.kind)]),
  );
}

describe("customer import", () => {
  it("reports every bad row by line and reason in a dry run, and writes nothing", async () => {
    const before = await snapshot(ctx.db);
    const csv = [
      HEADER,
      ...good, // lines 2-4
      "AC004,Bad Phone,12345,home-10,active,2026-06-30,,,0",
      "AC005,Far Away,+14155552671,home-10,active,2026-06-30,,,0",
      "AC006,No Plan,0712000006,gold,active,2026-06-30,,,0",
      "AC007,No Router,0712000007,home-10,active,2026-06-30,nowhere,,0",
      "AC008,Dup One,0712000008,home-10,active,2026-06-30,,,0",
      "ac008,Dup Two,0712000009,home-10,active,2026-06-30,,,0",
      "AC010,Bad Date,0712000010,home-10,active,2026-02-30,,,0",
      "AC011,Bad Amount,0712000011,home-10,active,2026-06-30,,,12.345",
      "AC012,Bad Status,0712000012,home-10,closed,2026-06-30,,,0",
      `${existingAccount},Someone Else,0712000013,home-10,pending,2026-06-30,,,0`,
      "AC014,Same Phone,0712999999,home-10,active,2026-06-30,,,0",
      "AC015,Short Row,0712000015",
    ].join("\n");
    const report = await analyseCustomerImport(ctx, csv, { servedCountries: ["KE"] });
    expect(report.fileError).toBeNull();
    expect(problemsByLine(report)).toEqual({
      5: ["bad_phone"],
      6: ["foreign_phone"],
      7: ["unknown_plan"],
      8: ["unknown_router"],
      9: ["duplicate_account"],
      10: ["duplicate_account"],
      11: ["bad_date"],
      12: ["bad_amount"],
      13: ["bad_status"],
      14: ["conflict"],
      15: ["duplicate_phone"],
      16: ["bad_row"],
    });
    expect(report.rows.filter((r) => r.outcome === "new").map((r) => r.line)).toEqual([2, 3, 4]);
    expect(report.counts).toEqual({ rows: 15, new: 3, unchanged: 0, refused: 12 });
    expect(report.rows.find((r) => r.line === 14)?.problems[0]?.message).toMatch(/name is Already Here/);
    expect(await snapshot(ctx.db)).toEqual(before);
  });

  it("refuses a whole file with an unclosed quote, a wrong header or too many bytes", async () => {
    const unclosed = [HEADER, good[0], 'AC009,"Never closed,0712000009,home-10,active', good[1]].join("\n");
    expect((await analyseCustomerImport(ctx, unclosed)).fileError).toMatch(/quote opened on line 3/);
    // Far more than a record's worth after the quote: still refused, still pointing at it.
    const tail = Array.from(
      { length: 500 },
      (_, i) => `T${i},Tail ${i},07130${String(i).padStart(5, "0")},home-10,active,2026-06-30,,,0`,
    );
    const long = [HEADER, good[0], 'AC009,"Never closed,0712000009,home-10,active', ...tail].join("\n");
    const longReport = await analyseCustomerImport(ctx, long);
    expect(longReport.fileError).toMatch(/line 3/);
    expect(longReport.rows).toEqual([]);
    expect((await analyseCustomerImport(ctx, `name,phone\n${good[0]}`)).fileError).toMatch(/header/);
    const big = `${HEADER}\n${"x".repeat(MAX_IMPORT_BYTES)}`;
    expect((await analyseCustomerImport(ctx, big)).fileError).toMatch(
      /is 5\.0 MB; at most 5\.0 MB can be imported at once/,
    );
    const rows = [HEADER, ...good].join("\n");
    expect((await analyseCustomerImport(ctx, rows, { maxRows: 2 })).fileError).toMatch(/3 rows; at most 2/);
    // Excel's plain "CSV": Windows-1252, its curly apostrophe byte 0x92 no UTF-8.
    const windows1252 = Buffer.concat([
      Buffer.from(`${HEADER}\nAC010,Ng`),
      Buffer.from([0x92]),
      Buffer.from("ang'a Kamau,0712000010,home-10,active,2026-06-30,,,0\n"),
    ]);
    expect((await analyseCustomerImport(ctx, windows1252)).fileError).toMatch(
      /not UTF-8 text.*CSV UTF-8 \(Comma delimited\)/,
    );
    const before = await snapshot(ctx.db);
    expect((await importCustomers(ctx, admin, unclosed)).committed).toBe(false);
    expect(await snapshot(ctx.db)).toEqual(before);
  });

  it("imports the good rows in one transaction, and a re-import changes nothing", async () => {
    const before = await snapshot(ctx.db);
    const csv = [HEADER, ...good, "AC004,Bad Phone,12345,home-10,active,2026-06-30,,,0"].join("\n");
    const report = await importCustomers(ctx, admin, csv, { fileName: "book.csv" });
    expect(report.committed).toBe(true);
    expect(report.counts).toEqual({ rows: 4, new: 3, unchanged: 0, refused: 1 });
    expect(await snapshot(ctx.db)).toEqual({
      customers: before.customers + 3,
      subscriptions: before.subscriptions + 3,
      // AC002's zero balance writes no entry; AC003 (pending) has its credit and its first period's invoice.
      ledger: before.ledger + 3,
      outbox: before.outbox + 1, // only the active subscriber gets a router account now
    });

    const rows = await ctx.db
      .select({ customer: customers, subscription: subscriptions })
      .from(customers)
      .innerJoin(subscriptions, eq(subscriptions.customerId, customers.id))
      .where(sql`${customers.accountNumber} like 'AC%'`)
      .orderBy(customers.accountNumber);
    expect(rows.map((r) => [r.customer.accountNumber, r.customer.phone, r.subscription.status])).toEqual([
      ["AC001", "+254712000001", "active"],
      ["AC002", "+254712000002", "suspended"],
      ["AC003", "+254712000003", "pending"],
    ]);
    const [ac001, ac002, ac003] = rows;
    expect(ac001!.subscription).toMatchObject({
      routerId: kiberaId,
      networkUsername: "ac001",
      currentPeriodEnd: new Date("2026-06-29T21:00:00Z"), // midnight in Nairobi
      currentPeriodStart: new Date("2026-05-29T21:00:00Z"),
    });
    expect(ac002!.subscription).toMatchObject({ networkUsername: "brian.o", suspendedReason: "admin" });
    expect(await ledgerSum(ctx.db, ac001!.customer.id)).toBe(-150_050);
    expect(await ledgerSum(ctx.db, ac002!.customer.id)).toBe(0);
    // Pending: the plan's price is owed before the first period starts, the credit goes towards it.
    expect(await ledgerSum(ctx.db, ac003!.customer.id)).toBe(25_000 - 250_000);
    // A debt is an open invoice (collected like any other), a credit a ledger entry.
    const [opening] = await ctx.db
      .select()
      .from(ledgerEntries)
      .where(eq(ledgerEntries.customerId, ac001!.customer.id));
    expect(opening).toMatchObject({ kind: "invoice", amountCents: -150_050 });
    const [debt] = await ctx.db.select().from(invoices).where(eq(invoices.id, opening!.invoiceId!));
    expect(debt).toMatchObject({ kind: "manual", status: "open", amountCents: 150_050, paidCents: 0 });
    const ac003Entries = await ctx.db
      .select()
      .from(ledgerEntries)
      .where(eq(ledgerEntries.customerId, ac003!.customer.id))
      .orderBy(ledgerEntries.id);
    expect(ac003Entries).toMatchObject([
      { kind: "credit", amountCents: 25_000 },
      { kind: "invoice", amountCents: -250_000, memo: "Home 10, first period" },
    ]);
    const [firstBill] = await ctx.db
      .select()
      .from(invoices)
      .where(eq(invoices.id, ac003Entries[1]!.invoiceId!));
    expect(firstBill).toMatchObject({
      kind: "recurring",
      status: "open",
      amountCents: 250_000,
      periodStart: ac003!.subscription.currentPeriodStart,
    });
    const provisioning = await ctx.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, ac001!.subscription.id));
    expect(provisioning).toMatchObject([{ action: "ensure_account", routerId: kiberaId, status: "pending" }]);
    const audited = await ctx.db.select().from(auditLog).where(eq(auditLog.action, "customers.imported"));
    expect(audited).toHaveLength(1);
    expect(audited[0]!.details).toMatchObject({ file: "book.csv", new: 3, refused: 1 });

    const after = await snapshot(ctx.db);
    const again = await importCustomers(ctx, admin, csv);
    expect(again.counts).toEqual({ rows: 4, new: 0, unchanged: 3, refused: 1 });
    expect(await snapshot(ctx.db)).toEqual(after);

    // A row that differs from the database is a conflict, never written over.
    const changed = [HEADER, good[0]!.replace("-1500.50", "0")].join("\n");
    const dry = await analyseCustomerImport(ctx, changed);
    expect(problemsByLine(dry)).toEqual({ 2: ["conflict"] });
    expect(dry.rows[0]!.problems[0]!.message).toMatch(/balance is -1500.50 there, 0.00 here/);
    await importCustomers(ctx, admin, changed);
    expect(await ledgerSum(ctx.db, ac001!.customer.id)).toBe(-150_050);
  });

  it("exports customers that import back the same on a fresh database", async () => {
    const exported = await exportCsv(ctx.db, ctx.settings.timezone, "customers");
    // With a byte order mark, so that Excel reads it as UTF-8.
    expect(exported.csv.split("\n")[0]).toBe(`\uFEFF${HEADER}`);
    expect(exported.csv).toContain(
      "AC001,Amina Wekesa,+254712000001,home-10,active,2026-06-30,kibera-1,ac001,-1500.50",
    );
    // Everything in the database reads as unchanged.
    const self = await analyseCustomerImport(ctx, exported.csv);
    expect(self.counts).toMatchObject({ new: 0, refused: 0, unchanged: exported.rows });

    const fresh = await world();
    const report = await importCustomers(fresh, admin, exported.csv);
    expect(report.counts).toMatchObject({ new: exported.rows, refused: 0 });
    const again = await exportCsv(fresh.db, fresh.settings.timezone, "customers");
    expect(again.csv).toBe(exported.csv);
  });

  it("exports a name a spreadsheet would run as a formula as text, and imports it back as it was", async () => {
    const fresh = await world();
    const name = "=2+5 Otieno";
    const report = await importCustomers(
      fresh,
      admin,
      `${HEADER}\nFX001,${name},0712000901,home-10,active,2026-07-30,,,0`,
    );
    expect(report.rows.flatMap((r) => r.problems.map((p) => p.message))).toEqual([]);
    expect(report.counts).toMatchObject({ new: 1, refused: 0 });
    const exported = await exportCsv(fresh.db, fresh.settings.timezone, "customers");
    expect(exported.csv).toContain(`FX001,'${name},+254712000901,`);
    const other = await world();
    await importCustomers(other, admin, exported.csv);
    const again = await exportCsv(other.db, other.settings.timezone, "customers");
    expect(again.csv).toBe(exported.csv);
    const [row] = await queryRows<{ name: string }>(
      other.db,
      sql`select name from customers where account_number = 'FX001'`,
    );
    expect(row!.name).toBe(name);
  });

  it("exports a period that ends during a day with its time, and imports it back to the minute", async () => {
    const fresh = await world();
    const report = await importCustomers(
      fresh,
      admin,
      `${HEADER}\nTM001,Njeri Kamau,0712000902,home-10,active,2026-07-01 14:37,,,0`,
    );
    expect(report.counts).toMatchObject({ new: 1, refused: 0 });
    const periodEnd = async (db: Db) =>
      (
        await queryRows<{ end: Date }>(
          db,
          sql`select s.current_period_end as end from subscriptions s join customers c on c.id = s.customer_id
              where c.account_number = 'TM001'`,
        )
      )[0]!.end;
    // 14:37 in Nairobi (UTC+3).
    expect(new Date(await periodEnd(fresh.db))).toEqual(new Date("2026-07-01T11:37:00Z"));
    const exported = await exportCsv(fresh.db, fresh.settings.timezone, "customers");
    expect(exported.csv).toContain("TM001,Njeri Kamau,+254712000902,home-10,active,2026-07-01 14:37,");
    const other = await world();
    await importCustomers(other, admin, exported.csv);
    expect(new Date(await periodEnd(other.db))).toEqual(new Date("2026-07-01T11:37:00Z"));
    expect((await analyseCustomerImport(fresh, exported.csv)).counts).toMatchObject({ unchanged: 1 });
  });

  it("exports payments and invoices", async () => {
    const invoices = await exportCsv(ctx.db, ctx.settings.timezone, "invoices");
    expect(invoices.csv.split("\n")[0]).toBe("\uFEFFaccount,period,amount,paid,status");
    expect(invoices.csv).toContain(`${existingAccount},2026-06-01..2026-07-01,2500.00,0.00,open`);
    const payments = await exportCsv(ctx.db, ctx.settings.timezone, "payments");
    expect(payments.csv.split("\n")[0]).toBe("\uFEFFreceived_at,account,amount,method,provider_ref,status");
  });

  it("imports 10,000 rows with 1 % bad ones in one go, and a re-import changes nothing", async () => {
    const fresh = await world();
    const lines = [HEADER];
    for (let i = 0; i < 10_000; i++) {
      const phone = `07${String(20_000_000 + i)}`;
      const bad = i % 100 === 7;
      lines.push(
        `BK${i},Bulk ${i},${bad ? "0799" : phone},home-10,${i % 3 === 0 ? "active" : "pending"},2026-07-${String((i % 28) + 1).padStart(2, "0")},,,${i % 5 === 0 ? "-2500" : "0"}`,
      );
    }
    const csv = lines.join("\n");
    const report = await importCustomers(fresh, admin, csv);
    expect(report.counts).toEqual({ rows: 10_000, new: 9_900, unchanged: 0, refused: 100 });
    expect(
      report.rows.filter((r) => r.outcome === "refused").every((r) => r.problems[0]!.kind === "bad_phone"),
    ).toBe(true);
    expect(await tableCount(fresh.db, "customers")).toBe(9_900);
    const before = await snapshot(fresh.db);
    const again = await importCustomers(fresh, admin, csv);
    expect(again.counts).toEqual({ rows: 10_000, new: 0, unchanged: 9_900, refused: 100 });
    expect(await snapshot(fresh.db)).toEqual(before);
  }, 120_000);

  it("bills an imported subscriber from the expiry date on, and the opening credit pays", async () => {
    const fresh = await world();
    await importCustomers(
      fresh,
      admin,
      [HEADER, "RN001,Renewing,0712000201,home-10,active,2026-01-31,,,3000"].join("\n"),
    );
    clock.set("2026-01-29T12:00:00Z");
    try {
      const { issueRecurringInvoices } = await import("../src/billing/invoicing.ts");
      expect((await issueRecurringInvoices(fresh, admin)).issued).toBe(1);
      const invoices = await exportCsv(fresh.db, fresh.settings.timezone, "invoices");
      expect(invoices.csv).toContain("RN001,2026-01-31..2026-02-28,2500.00,2500.00,paid");
    } finally {
      clock.set("2026-06-01T06:00:00Z");
    }
  });

  it("starts an imported pending subscriber only once the plan's price is paid, a credit counting towards it", async () => {
    const fresh = await world();
    const file = [
      HEADER,
      "PZ001,Pending Nothing,0712000311,home-10,pending,2026-06-15,,,0",
      "PC001,Pending Credit,0712000312,home-10,pending,2026-06-15,,,1000",
    ].join("\n");
    await importCustomers(fresh, admin, file);
    // The same file again is unchanged: its balances leave out the first period's invoice.
    expect((await importCustomers(fresh, admin, file)).counts).toMatchObject({ new: 0, unchanged: 2 });
    const exported = await exportCsv(fresh.db, fresh.settings.timezone, "customers");
    expect(exported.csv).toContain(
      "PZ001,Pending Nothing,+254712000311,home-10,pending,2026-06-15,,pz001,0.00",
    );
    expect(exported.csv).toContain(
      "PC001,Pending Credit,+254712000312,home-10,pending,2026-06-15,,pc001,1000.00",
    );

    const { applyPayment } = await import("../src/billing/payments.ts");
    const pay = async (account: string, amountCents: number, ref: string) => {
      const [row] = await fresh.db
        .select({ customer: customers })
        .from(customers)
        .where(eq(customers.accountNumber, account));
      return applyPayment(fresh, admin, {
        customerId: row!.customer.id,
        method: "cash",
        provider: "cash",
        providerRef: ref,
        amountCents,
      });
    };
    // KES 10 is no month of service.
    expect((await pay("PZ001", 1_000, "pz-1")).restoredSubscriptionIds).toEqual([]);
    expect((await pay("PZ001", 249_000, "pz-2")).restoredSubscriptionIds).toHaveLength(1);
    // KES 1,000 held and KES 1,500 paid: the plan's KES 2,500.
    expect((await pay("PC001", 149_900, "pc-1")).restoredSubscriptionIds).toEqual([]);
    const started = await pay("PC001", 100, "pc-2");
    expect(started.restoredSubscriptionIds).toHaveLength(1);
    expect(started.balanceCents).toBe(0);
  });

  it("brings back an imported pending or suspended debtor once the debt is paid", async () => {
    const fresh = await world();
    await importCustomers(
      fresh,
      admin,
      [
        HEADER,
        "SU001,Suspended Debtor,0712000301,home-10,suspended,2026-05-20,,,-2500",
        "PE001,Pending Debtor,0712000302,home-10,pending,2026-06-15,,,-2500",
      ].join("\n"),
    );
    const { applyPayment } = await import("../src/billing/payments.ts");
    for (const account of ["SU001", "PE001"]) {
      const [row] = await fresh.db
        .select({ customer: customers, subscription: subscriptions })
        .from(customers)
        .innerJoin(subscriptions, eq(subscriptions.customerId, customers.id))
        .where(eq(customers.accountNumber, account));
      const paid = await applyPayment(fresh, admin, {
        customerId: row!.customer.id,
        method: "cash",
        provider: "cash",
        providerRef: `import-${account}`,
        amountCents: 250_000,
      });
      expect(paid.restoredSubscriptionIds).toEqual([row!.subscription.id]);
      expect(paid.balanceCents).toBe(0);
    }
    const invoicesCsv = await exportCsv(fresh.db, fresh.settings.timezone, "invoices");
    expect(invoicesCsv.csv).toContain("SU001,");
    expect(invoicesCsv.csv).toContain("PE001,,2500.00,2500.00,paid");
  });

  it("runs from the command line: a dry run by default, --commit imports, export to a file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tandao-import-"));
    try {
      const file = join(dir, "customers.csv");
      await writeFile(
        file,
        [
          HEADER,
          "CL001,Cli One,0712000101,home-10,active,2026-06-30,,,100",
          "CL002,Cli Two,0712000102,home-10,active,2026-13-01,,,0",
        ].join("\n"),
      );
      const cli: CliContext = {
        ctx,
        box: createSecretBox(Buffer.alloc(32, 9)),
        servedCountries: ["KE"],
      };
      const run = async (argv: string[]) => {
        const out: string[] = [];
        await runCommand(cli, { kind: "admin", id: "cli:test", channel: "cli" }, argv, {
          out: (l) => out.push(l),
          secret: async () => "",
        });
        return out;
      };
      const dry = await run(["customers", "import", file]);
      expect(dry).toEqual([
        "line 2 CL001: new",
        'line 3 CL002: refused: bad date "2026-13-01" (YYYY-MM-DD, or YYYY-MM-DD HH:MM)',
        "dry run: 1 new, 0 unchanged, 1 refused (of 2 rows); nothing was written",
      ]);
      expect(
        await count(ctx.db, sql`select count(*)::int as n from customers where account_number = 'CL001'`),
      ).toBe(0);
      const committed = await run(["customers", "import", file, "--commit"]);
      expect(committed.at(-1)).toBe("imported 1 new customers; 0 unchanged, 1 refused (of 2 rows)");
      expect(
        await count(ctx.db, sql`select count(*)::int as n from customers where account_number = 'CL001'`),
      ).toBe(1);

      const out = join(dir, "out.csv");
      expect(await run(["export", "customers", out])).toEqual([
        expect.stringMatching(/customers written to/),
      ]);
      expect(await readFile(out, "utf8")).toContain(
        "CL001,Cli One,+254712000101,home-10,active,2026-06-30,,cl001,100.00",
      );
      expect((await run(["export", "invoices"]))[0]).toMatch(/^\uFEFFaccount,period,amount,paid,status/);
      await expect(run(["export", "vouchers"])).rejects.toThrow(/export customers\|payments\|invoices/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
