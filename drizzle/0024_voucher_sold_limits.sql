ALTER TABLE "vouchers" ADD COLUMN "limit_uptime_seconds" integer;--> statement-breakpoint
ALTER TABLE "vouchers" ADD COLUMN "limit_bytes_total" bigint;