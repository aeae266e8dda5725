import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BillingContext, defaultBillingSettings } from "../src/billing/context.ts";
import { billingJobs } from "../src/billing/jobs.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { systemClock } from "../src/clock.ts";
import { jobRuns, mpesaCallbacks, paymentIntents } from "../src/db/schema/index.ts";
import { stkCallbackBody } from "../src/payments/mpesa/fake-support.ts";
import { admin, createPlan, uniquePhone } from "./support/billing.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";

/**
 * The Cloudflare Worker (src/worker/index.ts), built as `wrangler deploy --dry-run` builds it
 * (offline, logged out) and run by `wrangler dev` (workerd on this machine) with Hyperdrive's local
 * connection string on the test database: a USSD session, an STK callback and one Cron Trigger.
 */

const root = path.resolve(import.meta.dirname, "..");
const wrangler = path.join(root, "node_modules", "wrangler", "bin", "wrangler.js");
const config = readFileSync(path.join(root, "wrangler.toml"), "utf8");

describe("wrangler.toml", () => {
  it("runs the Worker entry, with one Cron Trigger per billing job schedule", () => {
    expect(config).toMatch(/^main = "src\/worker\/index\.ts"$/m);
    const crons = JSON.parse(/^crons = (\[.*\])$/m.exec(config)?.[1] ?? "[]") as string[];
    expect(new Set(crons)).toEqual(new Set(billingJobs.map((job) => job.schedule)));
  });
});

/** Runs wrangler with telemetry and update checks off; resolves with its output when it exits. */
function runWrangler(args: string[], cwd: string, env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [wrangler, ...args], {
    cwd,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1", NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: workerd, its child, goes with it.
    detached: true,
  });
  let output = "";
  child.stdout!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, exited, output: () => output };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function stop(child: ChildProcess | undefined) {
  if (!child?.pid || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    // already gone
  }
}

const onServer = process.env.TEST_DATABASE_URL !== undefined;

describe.runIf(onServer)("the Cloudflare Worker, built and run locally", () => {
  const ussdToken = "ussd-worker-test";
  const callbackToken = "cb-worker-test";
  let database: TestDatabase;
  let ctx: BillingContext;
  let work: string;
  let dev: ReturnType<typeof runWrangler> | undefined;
  let base: string;

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), "tandao-worker-"));
    // The project's wrangler.toml (entry, aliases, bindings, vars, crons) with its paths made
    // absolute, in the temporary folder: wrangler's scratch folder (.wrangler/) lands beside it.
    const toml = path.join(work, "wrangler.toml");
    writeFileSync(
      toml,
      config.replaceAll('"./src/', `"${root}/src/`).replace('main = "src/', `main = "${root}/src/`),
    );
    // Offline and logged out, as in .ci/run.
    const build = runWrangler(
      ["deploy", "--dry-run", "--config", toml, "--outdir", path.join(work, "dist")],
      work,
    );
    expect(await build.exited, build.output()).toBe(0);
    expect(existsSync(path.join(work, "dist", "index.js"))).toBe(true);

    database = await createTestDatabase();
    ctx = { db: database.db, clock: systemClock, settings: defaultBillingSettings };
    // Hyperdrive's local connection string needs a password; the server's trust auth ignores it.
    const url = new URL(database.url!);
    if (!url.password) {
      url.username ||= "postgres";
      url.password = "postgres";
    }

    // The built bundle, as deployed, with the same configuration.
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    dev = runWrangler(
      [
        "dev",
        path.join(work, "dist", "index.js"),
        "--no-bundle",
        "--config",
        toml,
        "--ip",
        "127.0.0.1",
        "--port",
        String(port),
        "--inspector-port",
        String(await freePort()),
        "--persist-to",
        path.join(work, "state"),
        "--test-scheduled",
        "--var",
        `USSD_TOKEN:${ussdToken}`,
        "--var",
        `MPESA_CALLBACK_TOKEN:${callbackToken}`,
        // The key test/support/sealing-key.ts seals with, as the Node service's SECRET_KEY.
        "--var",
        `SECRET_KEY:${"07".repeat(32)}`,
      ],
      work,
      { CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE: url.toString() },
    );
    const deadline = Date.now() + 45_000;
    for (;;) {
      if (dev.child.exitCode !== null) throw new Error(`wrangler dev exited:\n${dev.output()}`);
      if (Date.now() > deadline) throw new Error(`wrangler dev not ready:\n${dev.output()}`);
      const ready = await fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  }, 90_000);

  afterAll(async () => {
    if (process.env.WORKER_TEST_LOG) console.log(dev?.output());
    stop(dev?.child);
    await Promise.race([dev?.exited, new Promise((r) => setTimeout(r, 5_000))]);
    await database?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("answers /healthz from the database through Hyperdrive", async () => {
    const answer = await fetch(`${base}/healthz`);
    expect(await answer.json()).toMatchObject({ status: "ok", database: "ok", runtime: "worker" });
  });

  const dial = (phone: string, session: string) => async (text: string) => {
    const answer = await fetch(`${base}/ussd/${ussdToken}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ sessionId: session, serviceCode: "*384*1#", phoneNumber: phone, text }),
    });
    expect(answer.status).toBe(200);
    return answer.text();
  };

  it("serves a USSD session that asks to pay, and settles the STK callback for it", async () => {
    const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const ussd = dial(customer.phone, `ATUid_worker_${customer.id}`);
    expect(await ussd("")).toMatch(/^CON .*\n1\. My account/s);
    expect(await ussd("2")).toMatch(/^CON .*KES 1,500/s);
    expect(await ussd("2*1")).toMatch(/^END .*M-Pesa PIN/s);
    expect(await fetch(`${base}/ussd`, { method: "POST", body: "" }).then((r) => r.status)).toBe(404);

    // The Worker recorded the intent; the Node service's dispatcher sends the push. Play its part.
    const [intent] = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.customerId, customer.id));
    expect(intent).toMatchObject({ status: "pending", amountCents: 150_000, channel: "ussd" });
    const checkoutRequestId = `ws_CO_worker_${intent!.id}`;
    await database.db
      .update(paymentIntents)
      .set({ merchantRequestId: `mr_${intent!.id}`, checkoutRequestId, sentAt: new Date() })
      .where(eq(paymentIntents.id, intent!.id));

    const receipt = `WK${String(intent!.id).padStart(8, "0")}`;
    const text = JSON.stringify(
      stkCallbackBody({
        merchantRequestId: `mr_${intent!.id}`,
        checkoutRequestId,
        result: { code: 0, desc: "The service request is processed successfully." },
        receipt,
        amount: 1500,
        msisdn: customer.phone.replace(/^\+/, ""),
        paidAt: new Date(),
      }),
    );
    const answer = await fetch(`${base}/hooks/mp/${callbackToken}/stk`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: text,
    });
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ ResultCode: 0 });
    expect(
      await database.db.select().from(mpesaCallbacks).where(eq(mpesaCallbacks.reference, checkoutRequestId)),
    ).toMatchObject([{ kind: "stk", raw: text, status: "processed", flag: null }]);
    const [settled] = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.id, intent!.id));
    expect(settled).toMatchObject({ status: "succeeded", mpesaReceipt: receipt });
    expect(settled!.paymentId).not.toBeNull();

    // A wrong token changes nothing.
    const stranger = await fetch(`${base}/hooks/mp/not-the-token/stk`, { method: "POST", body: text });
    expect(stranger.status).toBe(404);
  });

  it("runs the billing jobs of a Cron Trigger once per slot", async () => {
    const cron = "*/5 * * * *";
    const jobs = billingJobs.filter((job) => job.schedule === cron).map((job) => job.name);
    expect(jobs.length).toBeGreaterThan(0);
    for (let i = 0; i < 2; i++) {
      const answer = await fetch(`${base}/cdn-cgi/handler/scheduled?cron=${encodeURIComponent(cron)}`);
      expect(answer.status).toBe(200);
    }
    const runs = await database.db.select().from(jobRuns);
    for (const job of jobs) {
      const mine = runs.filter((run) => run.job === job);
      // Both triggers fell in the same minute (or the second in the next: then both ran).
      expect(mine.filter((run) => run.status === "ok").length).toBeGreaterThanOrEqual(1);
      for (const run of mine.filter((r) => r.status === "ok")) expect(run.slot!.getTime() % 60_000).toBe(0);
      const slots = mine.filter((run) => run.status === "ok").map((run) => run.slot!.getTime());
      expect(new Set(slots).size).toBe(slots.length);
    }
  });
});
