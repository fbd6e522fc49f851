-- Changes to products that name no rows a gateway could load again (a DELETE, a TRUNCATE) ask
-- every listener to take the whole catalogue again: the payload '*' on the same channel.
-- db-service also sends '*' after applying any migration (db:reset, db:migrate, start-up), so a
-- re-seed or a migration that rewrites products without an UPDATE is heard too. Changes that
-- fire no trigger at all (a restore, triggers disabled) are caught by the gateway's TTL.
CREATE FUNCTION "notify_products_resync"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('products_changed', '*');
  RETURN NULL;
END
$$;--> statement-breakpoint
CREATE TRIGGER "products_deleted" AFTER DELETE ON "products"
  FOR EACH STATEMENT EXECUTE FUNCTION "notify_products_resync"();--> statement-breakpoint
CREATE TRIGGER "products_truncated" AFTER TRUNCATE ON "products"
  FOR EACH STATEMENT EXECUTE FUNCTION "notify_products_resync"();
