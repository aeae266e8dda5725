import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { provisioningOutbox, routers } from "../../src/db/schema/index.ts";
import { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { addRouter, confirmRouterCertificate, listRouters, testRouter } from "../../src/network/routers.ts";
import { normalizeFingerprint } from "../../src/network/tls-pin.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { box, networkStack, waitFor } from "./support.ts";

/**
 * API-SSL with pinned certificates: the emulator serves TLS with self-signed certificates made by
 * openssl for this run; fingerprints are computed independently with node:crypto's X509Certificate.
 */

type Pem = { key: Buffer; cert: Buffer };
let dir: string;
let database: Database;
let certA: Pem;
let certB: Pem;

function selfSigned(name: string): Pem {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.crt`);
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"].concat([
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
    ]),
    { stdio: "ignore" },
  );
  return { key: readFileSync(key), cert: readFileSync(cert) };
}
const fingerprintOf = (pem: Pem) => new X509Certificate(pem.cert).fingerprint256;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "tandao-tls-"));
  certA = selfSigned("router-a");
  certB = selfSigned("router-b");
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
  rmSync(dir, { recursive: true, force: true });
});

const now = () => new Date();

async function tlsRouter(name: string, pem: Pem, tlsFingerprint?: string) {
  const emulator = await new RouterOsEmulator({
    identity: name,
    username: "tandao",
    password: `secret-${name}`,
    tls: pem,
  }).start();
  const { id } = await addRouter(database.db, box, {
    name,
    host: "127.0.0.1",
    port: emulator.port,
    tls: true,
    username: "tandao",
    password: `secret-${name}`,
    ...(tlsFingerprint ? { tlsFingerprint } : {}),
  });
  return { emulator, routerId: id };
}

async function routerRow(id: number) {
  const [row] = await database.db.select().from(routers).where(eq(routers.id, id));
  return row!;
}

describe("API-SSL certificate pinning", () => {
  it("refuses a router whose certificate nobody confirmed, keeps what it presented, and connects once confirmed", async () => {
    const { emulator, routerId } = await tlsRouter("ngong", certA);
    try {
      const refused = await testRouter(database.db, box, routerId, now);
      expect(refused.ok).toBe(false);
      expect(refused.error).toContain('router "ngong"');
      expect(refused.error).toContain(fingerprintOf(certA));
      expect(refused.error).toMatch(/no admin has confirmed/);
      expect(refused.error).not.toContain("secret-ngong");
      // The handshake was refused before the login: the router never saw the password (checked once
      // the router has seen the connection end, with everything sent on it).
      await waitFor(() => emulator.connectionCount === 0, 5_000);
      expect(emulator.loginAttempts).toBe(0);
      expect(await routerRow(routerId)).toMatchObject({
        tlsFingerprint: null,
        tlsFingerprintSeen: fingerprintOf(certA),
      });
      expect((await listRouters(database.db)).find((r) => r.id === routerId)).toMatchObject({
        tlsFingerprintSeen: fingerprintOf(certA),
        lastError: refused.error,
      });

      // Only the certificate presented can be pinned.
      expect(await confirmRouterCertificate(database.db, routerId, fingerprintOf(certB))).toMatchObject({
        ok: false,
      });
      expect(await confirmRouterCertificate(database.db, routerId, "not a fingerprint")).toMatchObject({
        ok: false,
      });
      expect((await routerRow(routerId)).tlsFingerprint).toBeNull();
      // As RouterOS prints it: lower case, no colons.
      const asRouterOsShowsIt = fingerprintOf(certA).replaceAll(":", "").toLowerCase();
      expect(await confirmRouterCertificate(database.db, routerId, asRouterOsShowsIt)).toEqual({
        ok: true,
        fingerprint: fingerprintOf(certA),
      });
      expect(await routerRow(routerId)).toMatchObject({
        tlsFingerprint: fingerprintOf(certA),
        tlsFingerprintSeen: null,
      });

      const ok = await testRouter(database.db, box, routerId, now);
      expect(ok).toMatchObject({ ok: true, identity: "ngong" });
      expect(emulator.loginCount).toBe(1);
    } finally {
      await emulator.stop();
    }
  });

  it("refuses a router whose certificate changed, naming it, and sends it nothing", async () => {
    const { emulator, routerId } = await tlsRouter("kiserian", certA, fingerprintOf(certA));
    try {
      expect((await testRouter(database.db, box, routerId, now)).ok).toBe(true);
      expect(emulator.loginCount).toBe(1);
      // Someone else answers on the router's address (or its certificate was replaced).
      await emulator.stop();
      emulator.tls = certB;
      await emulator.start();
      const refused = await testRouter(database.db, box, routerId, now);
      expect(refused.ok).toBe(false);
      expect(refused.error).toMatch(/router "kiserian" .*certificate changed/);
      expect(refused.error).toContain(fingerprintOf(certB));
      expect(refused.error).not.toContain("secret-kiserian");
      await waitFor(() => emulator.connectionCount === 0, 5_000);
      expect(emulator.loginAttempts).toBe(1);
      expect(await routerRow(routerId)).toMatchObject({
        tlsFingerprint: fingerprintOf(certA),
        tlsFingerprintSeen: fingerprintOf(certB),
      });
    } finally {
      await emulator.stop();
    }
  });

  it("holds a router's changes while its certificate waits for an admin, and delivers them once it is confirmed", async () => {
    const { emulator, routerId } = await tlsRouter("rongai", certA);
    const clock = new FakeClock(new Date());
    // No circuit in the way: each drain tries the router again.
    const stack = networkStack(database.db, clock, {
      connection: { breaker: { threshold: 100, baseCooldownMs: 1, maxCooldownMs: 1 } },
    });
    try {
      const plan = await createPlan(database.db, { priceCents: 100_000 });
      const { subscription } = await createCustomerWithSubscription(
        billingContext(database.db, clock).ctx,
        admin,
        {
          name: "Pinned Router",
          phone: uniquePhone(),
          planId: plan.id,
          routerId,
        },
      );
      await stack.worker.drain();
      const [waiting] = await database.db
        .select()
        .from(provisioningOutbox)
        .where(eq(provisioningOutbox.subscriptionId, subscription.id));
      // It waits like a router that is down: no attempt used up, nothing lost.
      expect(waiting).toMatchObject({ status: "pending", attempts: 0 });
      expect(waiting?.lastError).toMatch(/router "rongai" .*no admin has confirmed/);
      await waitFor(() => emulator.connectionCount === 0, 5_000);
      expect(emulator.loginAttempts).toBe(0);

      const seen = (await routerRow(routerId)).tlsFingerprintSeen!;
      expect(normalizeFingerprint(seen)).toBe(fingerprintOf(certA));
      expect((await confirmRouterCertificate(database.db, routerId, seen)).ok).toBe(true);
      clock.advance(60_000);
      await stack.worker.drain();
      expect(emulator.find("/ppp/secret", subscription.networkUsername)).toMatchObject({
        comment: `tandao:sub:${subscription.id}`,
      });
      expect(emulator.loginCount).toBe(1);
    } finally {
      await stack.close();
      await emulator.stop();
    }
  });
});
