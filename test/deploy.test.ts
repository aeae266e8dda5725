import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cp, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

/**
 * What the image is built from and how it runs, checked without a Docker daemon: the build context
 * leaves out what must not be baked in, the container's command is node itself (so `docker stop`'s
 * SIGTERM reaches the app), and the app runs from production dependencies only, as the image has them.
 */

const root = path.resolve(import.meta.dirname, "..");
const exec = promisify(execFile);

/** The final stage's instructions (from its `FROM` to the next one, or the end). */
function stage(dockerfile: string, name: string): string {
  const lines = dockerfile.split("\n");
  const start = lines.findIndex((l) => new RegExp(`^FROM .* AS ${name}$`, "i").test(l));
  const end = lines.findIndex((l, i) => i > start && /^FROM /i.test(l));
  return lines.slice(start, end === -1 ? undefined : end).join("\n");
}

describe("the Docker image", () => {
  it("leaves the data folder, node_modules and .git out of the build context", async () => {
    const ignored = (await readFile(path.join(root, ".dockerignore"), "utf8"))
      .split("\n")
      .map((l) => l.trim().replace(/\/$/, ""))
      .filter((l) => l && !l.startsWith("#"));
    for (const entry of ["data", "node_modules", ".git"]) expect(ignored).toContain(entry);
  });

  it("runs node as PID 1 in exec form, as a non-root user, with a health check on /healthz", async () => {
    // Instructions only: comments may name what is not done.
    const dockerfile = (await readFile(path.join(root, "Dockerfile"), "utf8"))
      .split("\n")
      .filter((line) => !line.trimStart().startsWith("#"))
      .join("\n");
    const app = stage(dockerfile, "app");
    expect(app).toMatch(/^FROM node:(22|24)-bookworm-slim AS app$/m);
    expect(app).toMatch(/^CMD \["node", "--max-semi-space-size=64", "--import", "tsx", "src\/main\.ts"\]$/m);
    // `npm start` runs the app with the same node flags as the image.
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(app)?.[1] ?? "[]") as string[];
    const scripts = (
      JSON.parse(await readFile(path.join(root, "package.json"), "utf8")) as { scripts: { start: string } }
    ).scripts;
    expect(scripts.start).toBe(`exec ${cmd.join(" ")}`);
    expect(app).toMatch(/^USER node$/m);
    expect(app).toMatch(/HEALTHCHECK[\s\S]*\/healthz/);
    // No tool fetched at build or run time, and no shell or npm between docker and node.
    expect(dockerfile).not.toMatch(/\bnpx\b/);
    expect(app).not.toMatch(/^(CMD|ENTRYPOINT) (?!\[)/m);
  });
});

describe("production dependencies only", () => {
  it("the app starts from them and answers /healthz, then stops on SIGTERM", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "tandao-prod-"));
    let child: ChildProcess | undefined;
    try {
      // What the image copies (Dockerfile), and node_modules pruned to production as its deps stage does.
      for (const entry of ["package.json", "package-lock.json", "src", "drizzle", "bin", "patches"])
        await cp(path.join(root, entry), path.join(dir, entry), { recursive: true });
      await exec("cp", ["-al", path.join(root, "node_modules"), path.join(dir, "node_modules")]);
      await exec("npm", ["prune", "--omit=dev", "--offline", "--no-audit", "--no-fund"], { cwd: dir });
      await expect(readFile(path.join(dir, "node_modules/vitest/package.json"))).rejects.toThrow();

      const env = Object.fromEntries(
        Object.entries(process.env).filter(
          ([k]) => !/^(MPESA_|AT_|USSD_|TELEGRAM_|WHATSAPP_|DATABASE_URL|TANDAO_MODE)/.test(k),
        ),
      );
      child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
        cwd: dir,
        env: {
          ...env,
          NODE_ENV: "production",
          // A port of its own choosing: one picked free beforehand may be taken by a sandbox fake first.
          PORT: "0",
          DATA_DIR: path.join(dir, "data"),
          TELEGRAM_SANDBOX_PORT: "0",
          WHATSAPP_SANDBOX_PORT: "0",
          TELEGRAM_ADMIN_SANDBOX_PORT: "0",
          LOG_LEVEL: "info",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let errors = "";
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
        errors += chunk;
      });
      // The port it took, from its "listening on" line.
      let port = 0;
      let output = "";
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        output += chunk;
        const listening = /"port":(\d+),"msg":"listening on/.exec(output);
        if (listening) port = Number(listening[1]);
      });
      const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));

      let health: Response | undefined;
      for (let tries = 0; tries < 600 && !health; tries++) {
        if (port === 0) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        health = await fetch(`http://127.0.0.1:${port}/healthz`).catch(async () => {
          await new Promise((r) => setTimeout(r, 100));
          return undefined;
        });
      }
      expect(health?.status, `${errors}${output}`).toBe(200);
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
    } finally {
      child?.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
