CREATE TABLE "admin_imports" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "admin_imports_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"admin_telegram_id" bigint NOT NULL,
	"chat_id" text NOT NULL,
	"file_id" text NOT NULL,
	"file_name" text NOT NULL,
	"file_size" integer,
	"status" text NOT NULL,
	"content_base64" text,
	"counts" jsonb,
	"confirmation_token" text,
	"error" text,
	"lease_until" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE INDEX "admin_imports_open_idx" ON "admin_imports" USING btree ("status") WHERE "admin_imports"."status" in ('requested', 'checked', 'confirmed');--> statement-breakpoint
CREATE INDEX "admin_imports_token_idx" ON "admin_imports" USING btree ("confirmation_token");