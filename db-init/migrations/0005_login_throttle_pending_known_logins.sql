CREATE TABLE "known_logins" (
	"user_id" integer NOT NULL,
	"address" text NOT NULL,
	"last_success" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "known_logins_user_id_address_pk" PRIMARY KEY("user_id","address")
);
--> statement-breakpoint
ALTER TABLE "throttle" ADD COLUMN "pending" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "known_logins" ADD CONSTRAINT "known_logins_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "known_logins_last_success_idx" ON "known_logins" USING btree ("last_success");