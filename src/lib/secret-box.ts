import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

/**
 * Secrets at rest (router passwords): AES-256-GCM, a fresh 96-bit nonce per value, stored as
 * `v1:<nonce>:<tag>:<ciphertext>` in base64. A tampered value or a wrong key fails to open.
 */
export interface SecretBox {
  seal(plaintext: string): string;
  open(sealed: string): string;
}

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new Error("the secret key must be 32 bytes");
  return {
    seal(plaintext) {
      const iv = randomBytes(12);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
      return [
        "v1",
        iv.toString("base64"),
        cipher.getAuthTag().toString("base64"),
        body.toString("base64"),
      ].join(":");
    },
    open(sealed) {
      const [version, iv, tag, body] = sealed.split(":");
      if (version !== "v1" || !iv || !tag || body === undefined) throw new Error("not a sealed secret");
      const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(iv, "base64"));
      decipher.setAuthTag(Buffer.from(tag, "base64"));
      return Buffer.concat([decipher.update(Buffer.from(body, "base64")), decipher.final()]).toString("utf8");
    },
  };
}

/** 32 bytes written as 64 hex digits or as base64. */
export function parseSecretKey(text: string): Buffer {
  const value = text.trim();
  const key = /^[0-9a-fA-F]{64}$/.test(value) ? Buffer.from(value, "hex") : Buffer.from(value, "base64");
  if (key.length !== 32) throw new Error("SECRET_KEY must be 32 bytes, as 64 hex digits or base64");
  return key;
}

/**
 * The configured key, or in sandbox mode a key generated once and kept in DATA_DIR (mode 0600), so
 * that a newcomer's router passwords survive restarts without any setup.
 */
export function loadSecretKey(options: { secretKey?: string; dataDir: string; sandbox: boolean }): Buffer {
  if (options.secretKey) return parseSecretKey(options.secretKey);
  if (!options.sandbox)
    throw new Error("SECRET_KEY is required outside sandbox mode (32 bytes, hex or base64)");
  const file = path.resolve(options.dataDir, "secret.key");
  if (existsSync(file)) return parseSecretKey(readFileSync(file, "utf8"));
  mkdirSync(path.dirname(file), { recursive: true });
  const key = randomBytes(32);
  writeFileSync(file, `${key.toString("hex")}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(file, 0o600);
  return key;
}
