import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

/** Running the Cloudflare Worker locally for test/worker.test.ts: wrangler, ports, requests. */

const wrangler = path.resolve(
  import.meta.dirname,
  "..",
  "..",
  "node_modules",
  "wrangler",
  "bin",
  "wrangler.js",
);

/** Runs wrangler with telemetry and update checks off; resolves with its output when it exits. */
export function runWrangler(args: string[], cwd: string, env: Record<string, string> = {}) {
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

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export function stop(child: ChildProcess | undefined) {
  if (!child?.pid || child.exitCode !== null) return;
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    // already gone
  }
}

/**
 * A request to the Worker under `wrangler dev`. Locally, workerd breaks the connection after an
 * answer given before the request's body was read (a webhook refusing a wrong secret does just that),
 * and wrangler's proxy answers the next request on it 503 "Your worker restarted mid-request" without
 * passing it on; that answer is the dev server's, so the request is sent once more. A deployed Worker
 * has no such proxy.
 */
export async function send(url: string, init?: RequestInit): Promise<Response> {
  const answer = await fetch(url, init);
  if (answer.status !== 503 || answer.headers.get("retry-after") !== "0") return answer;
  if (!(await answer.clone().text()).startsWith("Your worker restarted mid-request")) return answer;
  return fetch(url, init);
}

/** Waits until `read` gives something: what the Worker does after its answer (WhatsApp messages). */
export async function eventually<T>(read: () => Promise<T | null | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await read();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`not reached in time: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface WorkerDev {
  /** Resolves with where the Worker answers (`http://127.0.0.1:<port>`) once it answers `/healthz`. */
  ready: Promise<string>;
  /** What wrangler printed so far (the build, then the dev server). */
  output(): string;
  /** Stops wrangler (whichever step is running) and removes its folder; at any point, even mid-start. */
  close(): Promise<void>;
}

const root = path.resolve(import.meta.dirname, "..", "..");

/**
 * The Worker built as `wrangler deploy --dry-run` builds it (offline, logged out, as in .ci/run) from
 * the project's `wranglerToml`, then that bundle run by `wrangler dev` (workerd) with `vars` as its
 * settings and Hyperdrive's local connection string on `databaseUrl`. The handle comes back at once,
 * so a caller whose set-up times out can still `close()` what was started.
 */
export function startWorkerDev(
  wranglerToml: string,
  vars: Record<string, string>,
  databaseUrl: string,
): WorkerDev {
  const work = mkdtempSync(path.join(tmpdir(), "tandao-worker-"));
  let running: ReturnType<typeof runWrangler> | undefined;
  let closed = false;
  const close = async () => {
    closed = true;
    if (running) {
      stop(running.child);
      await Promise.race([running.exited, new Promise((r) => setTimeout(r, 5_000))]);
    }
    rmSync(work, { recursive: true, force: true });
  };

  const ready = (async () => {
    // The project's wrangler.toml (entry, aliases, bindings, vars, crons) with its paths made
    // absolute, in the temporary folder: wrangler's scratch folder (.wrangler/) lands beside it.
    const toml = path.join(work, "wrangler.toml");
    writeFileSync(
      toml,
      wranglerToml.replaceAll('"./src/', `"${root}/src/`).replace('main = "src/', `main = "${root}/src/`),
    );
    const build = runWrangler(
      ["deploy", "--dry-run", "--config", toml, "--outdir", path.join(work, "dist")],
      work,
    );
    running = build;
    if ((await build.exited) !== 0 || !existsSync(path.join(work, "dist", "index.js")))
      throw new Error(`the Worker did not build:\n${build.output()}`);

    // Hyperdrive's local connection string needs a password; the server's trust auth ignores it.
    const url = new URL(databaseUrl);
    if (!url.password) {
      url.username ||= "postgres";
      url.password = "postgres";
    }
    // The built bundle, as deployed, with the same configuration.
    const port = await freePort();
    const inspectorPort = await freePort();
    if (closed) throw new Error("closed before wrangler dev started");
    const dev = runWrangler(
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
        String(inspectorPort),
        "--persist-to",
        path.join(work, "state"),
        "--test-scheduled",
        ...Object.entries(vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
      ],
      work,
      { CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE: url.toString() },
    );
    running = dev;
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 45_000;
    for (;;) {
      if (closed) throw new Error("closed before wrangler dev was ready");
      if (dev.child.exitCode !== null) throw new Error(`wrangler dev exited:\n${dev.output()}`);
      if (Date.now() > deadline) throw new Error(`wrangler dev not ready in 45 s:\n${dev.output()}`);
      const answered = await fetch(`${base}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (answered) return base;
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  // Whoever awaits `ready` gets its failure; a caller that gave up waiting (a set-up timeout) must
  // not see it again as an unhandled rejection.
  ready.catch(() => {});
  return { ready, output: () => running?.output() ?? "", close };
}
