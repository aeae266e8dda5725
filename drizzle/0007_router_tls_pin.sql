ALTER TABLE "routers" ADD COLUMN "tls_fingerprint" text;--> statement-breakpoint
ALTER TABLE "routers" ADD COLUMN "tls_fingerprint_seen" text;