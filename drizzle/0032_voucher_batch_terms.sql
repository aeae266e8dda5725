ALTER TABLE "voucher_batches" ADD COLUMN "period_unit" text;--> statement-breakpoint
ALTER TABLE "voucher_batches" ADD COLUMN "period_count" integer;--> statement-breakpoint
ALTER TABLE "voucher_batches" ADD COLUMN "time_limit_seconds" integer;--> statement-breakpoint
ALTER TABLE "voucher_batches" ADD COLUMN "data_cap_bytes" bigint;