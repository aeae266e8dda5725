CREATE TABLE "database_mode" (
	"id" integer PRIMARY KEY DEFAULT 1 NOT NULL,
	"mode" text NOT NULL,
	"since" timestamp with time zone NOT NULL,
	CONSTRAINT "database_mode_one_row" CHECK ("database_mode"."id" = 1)
);
--> statement-breakpoint
-- A database in use before this table: one the sandbox seeded (its emulated router) is a sandbox's;
-- one holding customers otherwise is a production ISP's. An empty one is claimed by its next start.
INSERT INTO "database_mode" ("id", "mode", "since")
SELECT 1, CASE WHEN EXISTS (SELECT 1 FROM "routers" WHERE "name" = 'sandbox') THEN 'sandbox' ELSE 'production' END, now()
WHERE EXISTS (SELECT 1 FROM "customers") OR EXISTS (SELECT 1 FROM "routers");
