import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import { routers } from "../../src/db/schema/index.ts";
import { adminWorldForFile, auditRows, lastText, OWNER } from "./world.ts";

/**
 * `/router_cert`: the API-SSL certificate a router presented, pinned once an admin types the
 * fingerprint they read on the router. (The connection refusing, then accepting, the certificate is
 * tested in test/network/tls-pin.test.ts.)
 */

const clock = new FakeClock("2026-05-01T08:00:00Z");
const SUPPORT = 6_700_002;
const world = adminWorldForFile(clock, [{ id: SUPPORT, role: "support", name: "Sam" }]);

const SEEN =
  "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
const OTHER = SEEN.replace(/^AB/, "00");

describe("/router_cert", () => {
  it("shows the certificate a TLS router presented, and pins it only when the typed fingerprint is that one", async () => {
    const [router] = await world.db
      .insert(routers)
      .values({
        name: "Kibera-TLS",
        host: "10.0.0.9",
        port: 8729,
        tls: true,
        username: "tandao",
        passwordEncrypted: "x",
      })
      .returning();
    const pinned = async () =>
      (await world.db.select().from(routers).where(eq(routers.id, router!.id)))[0]!.tlsFingerprint;

    await world.say(SUPPORT, "/router_cert Kibera-TLS");
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/router_cert/);
    await world.say(OWNER, "/router_cert");
    expect(lastText(world.fake, OWNER)).toMatch(/Say the router, then its fingerprint/);
    await world.say(OWNER, "/router_cert Nowhere");
    expect(lastText(world.fake, OWNER)).toBe('No router "Nowhere". /routers lists them.');
    await world.say(OWNER, "/router_cert kibera-tls");
    expect(lastText(world.fake, OWNER)).toBe("Kibera-TLS has presented no new certificate to confirm.");

    // As the connection leaves it after the router presented a certificate none had pinned.
    await world.db.update(routers).set({ tlsFingerprintSeen: SEEN }).where(eq(routers.id, router!.id));
    await world.say(OWNER, "/routers");
    expect(lastText(world.fake, OWNER)).toContain(
      "a new TLS certificate waits to be confirmed: /router_cert Kibera-TLS",
    );
    await world.say(OWNER, "/router_cert Kibera-TLS");
    expect(lastText(world.fake, OWNER)).toBe(
      `Kibera-TLS presented a certificate with SHA-256 fingerprint:\n${SEEN}\nCompare it with the router's own (/certificate print detail, its fingerprint), then type /router_cert Kibera-TLS <that fingerprint>.`,
    );

    // Pasted with spaces between the pairs: still read as one fingerprint.
    await world.say(OWNER, `/router_cert Kibera-TLS ${OTHER.replaceAll(":", " ")}`);
    expect(lastText(world.fake, OWNER)).toBe(
      `Not pinned: the router presented another certificate (SHA-256 ${SEEN}).`,
    );
    await world.say(OWNER, "/router_cert Kibera-TLS 12:34");
    expect(lastText(world.fake, OWNER)).toMatch(/^Not pinned: not a SHA-256 fingerprint/);
    expect(await pinned()).toBeNull();

    // As MikroTik prints it: lower case, without colons.
    await world.say(OWNER, `/router_cert Kibera-TLS ${SEEN.replaceAll(":", "").toLowerCase()}`);
    expect(lastText(world.fake, OWNER)).toBe(
      `✅ Kibera-TLS's certificate is pinned (SHA-256 ${SEEN}): its next connection is accepted.`,
    );
    expect(await pinned()).toBe(SEEN);
    expect(await auditRows(world.db, "router.certificate_confirmed", `tg:${OWNER}`)).toMatchObject([
      { entityId: String(router!.id), details: { router: "Kibera-TLS", fingerprint: SEEN } },
    ]);
    await world.say(OWNER, "/router_cert Kibera-TLS");
    expect(lastText(world.fake, OWNER)).toBe(
      `Pinned now: SHA-256 ${SEEN}.\nKibera-TLS has presented no new certificate to confirm.`,
    );
  });
});
