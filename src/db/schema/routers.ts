import { boolean, integer, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { at, createdAt, id } from "./columns.ts";

export const routers = pgTable(
  "routers",
  {
    id: id(),
    name: text("name").notNull(),
    host: text("host").notNull(),
    port: integer("port").notNull().default(8728),
    tls: boolean("tls").notNull().default(false),
    username: text("username").notNull(),
    /** AES-256-GCM ciphertext (see src/lib/secret-box.ts); the key comes from configuration. */
    passwordEncrypted: text("password_encrypted").notNull(),
    /**
     * SHA-256 fingerprint of the router's API-SSL certificate, pinned: a connection presenting
     * another is refused. Learned on first connect only when an admin confirms the one seen
     * (`tlsFingerprintSeen`).
     */
    tlsFingerprint: text("tls_fingerprint"),
    /** The fingerprint last presented while none (or another) was pinned, for an admin to confirm. */
    tlsFingerprintSeen: text("tls_fingerprint_seen"),
    lastContactAt: at("last_contact_at"),
    lastError: text("last_error"),
    lastErrorAt: at("last_error_at"),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("routers_name_uq").on(t.name)],
);
