import { customType } from "drizzle-orm/pg-core";
import type { SecretBox } from "../lib/secret-box.ts";

/**
 * Columns that hold a secret a person uses (a subscriber's PPPoE password) are sealed at rest with
 * the same AES-256-GCM box as router passwords: the database, its backups and any query error
 * carry `v1:…` ciphertext only. Sealing happens in the column type, so every reader through the
 * schema (the provisioning worker, the activation message) gets the password and nothing else
 * changes. The key is the process's SECRET_KEY, registered once at start.
 */
let box: SecretBox | null = null;

export function useSealingKey(secretBox: SecretBox): void {
  box = secretBox;
}

export const sealedPrefix = "v1:";

export function isSealed(value: string): boolean {
  return value.startsWith(sealedPrefix);
}

export function requireBox(): SecretBox {
  if (!box) throw new Error("no sealing key registered (useSealingKey) for a sealed column");
  return box;
}

export const sealedText = customType<{ data: string; driverData: string }>({
  dataType: () => "text",
  toDriver: (value) => requireBox().seal(value),
  // A value written before sealing existed is read as it is (and sealed by `sealPlainSecrets`).
  fromDriver: (value) => (isSealed(value) ? requireBox().open(value) : value),
});
