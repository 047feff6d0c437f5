//! The SQL `walcast setup` runs: the `walcast` schema with its event-trigger functions and
//! triggers (install), and their removal (uninstall). Text only; `mod.rs` runs it.
//!
//! How the three triggers work together (one DDL command):
//! - `walcast_ddl_start` (`ddl_command_start`) reads the shape of every user table into a row
//!   of `walcast.ddl_state`, keyed by backend and nesting depth (a DDL run by a function that a
//!   DDL calls nests);
//! - `walcast_ddl_drop` (`sql_drop`) adds the tables and schemas the command dropped to it;
//! - `walcast_ddl_end` (`ddl_command_end`) takes that row back, reads the shapes again, and when
//!   any table differs emits one `walcast.ddl` message in the command's transaction.
//!
//! The before-state lives in an unlogged table that only the installing role can write, not in
//! a session setting: code that runs during the command (a column default, `USING`, a function
//! in `CREATE TABLE AS`) can change any setting, and a forged before-state would describe
//! renames that never happened. (That closes one door only: on PostgreSQL 15 any role may call
//! `pg_logical_emit_message` and write a `walcast.ddl` message of its own; nothing in the WAL
//! says who wrote one.) Shapes are composite values, compared as values and turned
//! into JSON only for the tables that changed: reading them is the cost every DDL pays.
//!
//! Types and defaults are printed with `search_path = pg_catalog` (the functions' own, as
//! `SECURITY DEFINER` requires): names outside `pg_catalog` come schema-qualified
//! (`public.mood`, `nextval('public.people_id_seq'::regclass)`).

/// The version of the trigger functions this SQL installs (`walcast.ddl_version()`), and of the
/// messages they emit.
pub const DDL_VERSION: u32 = 1;

/// The event triggers, in the order they fire for one command.
pub const TRIGGERS: [&str; 3] = ["walcast_ddl_start", "walcast_ddl_drop", "walcast_ddl_end"];

/// Command tags that cannot change a table's columns, name or primary key, so that no shape is
/// read for them: comments, privileges and labels change no shape; functions, procedures,
/// triggers, policies, views, statistics and materialized-view refreshes are other objects
/// (`CREATE OR REPLACE` included: a default prints a function's name, which only `ALTER
/// FUNCTION ... RENAME` changes, and that is read). `CREATE INDEX` cannot make a primary key
/// (`ALTER TABLE ... ADD PRIMARY KEY USING INDEX` can, and is read). Every `DROP` is read:
/// `CASCADE` reaches columns and keys.
const SKIPPED_TAGS: &str = "ARRAY['COMMENT', 'GRANT', 'REVOKE', 'SECURITY LABEL', \
    'ALTER DEFAULT PRIVILEGES', 'CREATE FUNCTION', 'CREATE PROCEDURE', 'CREATE INDEX', \
    'CREATE TRIGGER', 'CREATE POLICY', 'ALTER POLICY', 'DROP POLICY', 'CREATE VIEW', \
    'CREATE STATISTICS', 'REFRESH MATERIALIZED VIEW']";

/// Common table expressions ending in `shapes(oid, shape)`: one `walcast.ddl_table` per user
/// table (relkind `r` or `p` outside the system schemas and `walcast`), read in one query. Each
/// table's columns come from an index scan of `pg_attribute` (a subquery per table, not a
/// join): a database with few tables then pays for few rows, not for the whole catalog.
const SHAPES: &str = r#"rels AS (
            SELECT c.oid, n.nspname, c.relname
              FROM pg_class c
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'walcast')
               AND NOT starts_with(n.nspname, 'pg_toast')
               AND NOT starts_with(n.nspname, 'pg_temp')
        ), shapes AS (
            SELECT r.oid::bigint AS oid,
                   ROW(r.nspname, r.relname, r.oid::bigint,
                       coalesce((
                           SELECT array_agg(ROW(
                                      a.attnum,
                                      a.attname,
                                      format_type(a.atttypid, a.atttypmod),
                                      NOT a.attnotnull,
                                      CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
                                      CASE a.attgenerated WHEN 's' THEN 'stored' END,
                                      CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END,
                                      CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
                                      coalesce(a.attnum = ANY (i.indkey::int2[]), false)
                                  )::walcast.ddl_column ORDER BY a.attnum)
                             FROM pg_attribute a
                             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                            WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
                       ), '{}'),
                       coalesce((
                           SELECT array_agg(a.attname::text ORDER BY k.ord)
                             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                             JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum = k.attnum
                       ), '{}'))::walcast.ddl_table AS shape
              FROM rels r
              LEFT JOIN pg_index i ON i.indrelid = r.oid AND i.indisprimary
        )"#;

/// The install script's body (run in one transaction, ending with the `installed` control
/// message). Idempotent: objects are created when missing or replaced, the triggers re-created.
const INSTALL: &str = r#"-- Quiet the "already exists, skipping" notices of a second run.
SET LOCAL client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS walcast;
COMMENT ON SCHEMA walcast IS 'walcast setup: event triggers that describe schema changes as walcast.ddl logical messages';
-- walcast reads walcast.ddl_version() with its own role.
GRANT USAGE ON SCHEMA walcast TO PUBLIC;

-- A table's shape as the messages carry it (the JSON keys are these field names, in order).
DO $do$
BEGIN
    IF to_regtype('walcast.ddl_column') IS NULL THEN
        CREATE TYPE walcast.ddl_column AS (
            attnum smallint, name text, type text, nullable boolean, "default" text,
            generated text, generation_expression text, identity text, primary_key boolean);
    END IF;
    IF to_regtype('walcast.ddl_table') IS NULL THEN
        CREATE TYPE walcast.ddl_table AS (
            schema text, "table" text, oid bigint, columns walcast.ddl_column[],
            primary_key text[]);
    END IF;
END
$do$;

-- The shapes read before each command still running, per backend and nesting depth. Unlogged:
-- rows live only within their transaction. Only the installing role may touch it.
CREATE UNLOGGED TABLE IF NOT EXISTS walcast.ddl_state (
    pid integer NOT NULL,
    depth integer NOT NULL,
    xact xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    before walcast.ddl_table[],
    dropped json NOT NULL DEFAULT '[]',
    error text,
    PRIMARY KEY (pid, depth)
);
REVOKE ALL ON walcast.ddl_state FROM PUBLIC;
-- Written after each message (see walcast.ddl_emit): a WAL record that decoding skips.
CREATE SEQUENCE IF NOT EXISTS walcast.ddl_order;
REVOKE ALL ON walcast.ddl_order FROM PUBLIC;

CREATE OR REPLACE FUNCTION walcast.ddl_version() RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS 'SELECT 1';

CREATE OR REPLACE FUNCTION walcast.ddl_capture() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    level integer;
BEGIN
    IF tg_tag = ANY ({SKIPPED}) THEN
        RETURN;
    END IF;
    -- Rows of an earlier transaction of this backend (left by a disabled end trigger).
    DELETE FROM walcast.ddl_state
     WHERE pid = pg_backend_pid() AND xact <> pg_current_xact_id();
    SELECT coalesce(max(depth), 0) + 1 INTO level
      FROM walcast.ddl_state WHERE pid = pg_backend_pid();
    BEGIN
        INSERT INTO walcast.ddl_state (pid, depth, before)
        WITH {SHAPES}
        SELECT pg_backend_pid(), level, coalesce(array_agg(shape ORDER BY oid), '{}')
          FROM shapes;
    EXCEPTION WHEN OTHERS THEN
        -- The command goes ahead; its message says the shapes could not be read.
        RAISE WARNING 'walcast: cannot read the table shapes before %: % (%)', tg_tag, SQLERRM, SQLSTATE;
        INSERT INTO walcast.ddl_state (pid, depth, error)
        VALUES (pg_backend_pid(), level, SQLSTATE || ': ' || SQLERRM);
    END;
END
$fn$;

CREATE OR REPLACE FUNCTION walcast.ddl_collect_drops() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    added json;
BEGIN
    IF tg_tag = ANY ({SKIPPED}) THEN
        RETURN;
    END IF;
    BEGIN
        SELECT json_agg((SELECT d FROM (SELECT o.object_type, o.schema_name AS schema,
                                               o.object_name AS name,
                                               o.object_identity AS identity) AS d)
                        ORDER BY o.ordinality)
          INTO added
          FROM pg_event_trigger_dropped_objects() WITH ORDINALITY AS o
         WHERE o.object_type IN ('table', 'schema')
           AND NOT o.is_temporary
           AND coalesce(o.schema_name, o.object_name) NOT IN ('pg_catalog', 'information_schema', 'walcast')
           AND NOT starts_with(coalesce(o.schema_name, o.object_name), 'pg_toast')
           AND NOT starts_with(coalesce(o.schema_name, o.object_name), 'pg_temp');
        IF added IS NOT NULL THEN
            UPDATE walcast.ddl_state s
               SET dropped = (SELECT json_agg(e ORDER BY part, ord) FROM (
                       SELECT 1 AS part, e, ord FROM json_array_elements(s.dropped) WITH ORDINALITY AS x(e, ord)
                       UNION ALL
                       SELECT 2, e, ord FROM json_array_elements(added) WITH ORDINALITY AS y(e, ord)) AS z)
             WHERE s.pid = pg_backend_pid()
               AND s.depth = (SELECT max(depth) FROM walcast.ddl_state WHERE pid = pg_backend_pid());
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'walcast: cannot record the objects % dropped: % (%)', tg_tag, SQLERRM, SQLSTATE;
        UPDATE walcast.ddl_state s SET error = coalesce(s.error, SQLSTATE || ': ' || SQLERRM)
         WHERE s.pid = pg_backend_pid()
           AND s.depth = (SELECT max(depth) FROM walcast.ddl_state WHERE pid = pg_backend_pid());
    END;
END
$fn$;

CREATE OR REPLACE FUNCTION walcast.ddl_emit() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $fn$
DECLARE
    state walcast.ddl_state;
    changed json;
    changed_oids bigint[];
    afters walcast.ddl_table[];
    moved bigint[];
    message text;
BEGIN
    IF tg_tag = ANY ({SKIPPED}) THEN
        RETURN;
    END IF;
    -- Taken outside the block below, so that a failure there cannot leave the row behind.
    DELETE FROM walcast.ddl_state s
     WHERE s.pid = pg_backend_pid()
       AND s.depth = (SELECT max(depth) FROM walcast.ddl_state WHERE pid = pg_backend_pid())
    RETURNING * INTO state;
    BEGIN
        IF state.pid IS NULL THEN
            RAISE EXCEPTION 'no table shapes were read before the command (is walcast_ddl_start enabled?)';
        ELSIF state.error IS NOT NULL THEN
            RAISE EXCEPTION '%', state.error;
        END IF;
        WITH {SHAPES}, before AS (
            SELECT (t).oid AS oid, t AS shape FROM unnest(state.before) AS t
        ), diff AS (
            SELECT coalesce(a.oid, b.oid) AS oid, b.shape AS before, a.shape AS after
              FROM before b
              FULL JOIN shapes a ON a.oid = b.oid
             WHERE b.shape IS DISTINCT FROM a.shape
        )
        SELECT json_agg(d ORDER BY d.oid), array_agg(d.oid),
               array_agg(d.after) FILTER (WHERE d.after IS NOT NULL)
          INTO changed, changed_oids, afters
          FROM diff AS d;
        IF changed IS NOT NULL THEN
            message := format('{"version":1,"command":%s,"tables":%s,"dropped":%s}',
                              to_json(tg_tag), changed, state.dropped);
        END IF;
        IF changed IS NOT NULL AND state.depth > 1 THEN
            -- A command run inside another one (by a function it calls, or by another event
            -- trigger): the outer command's message must not describe these changes again. Its
            -- before-shape of each table this command changed, and it had not, moves on.
            SELECT array_agg(c) INTO moved
              FROM unnest(changed_oids) AS c
             WHERE (SELECT pb FROM walcast.ddl_state p, unnest(p.before) AS pb
                     WHERE p.pid = pg_backend_pid() AND p.depth = state.depth - 1 AND (pb).oid = c)
                   IS NOT DISTINCT FROM
                   (SELECT ib FROM unnest(state.before) AS ib WHERE (ib).oid = c);
            IF moved IS NOT NULL THEN
                UPDATE walcast.ddl_state p
                   SET before = (SELECT coalesce(array_agg(x.s ORDER BY (x.s).oid), '{}') FROM (
                           SELECT pb AS s FROM unnest(p.before) AS pb WHERE (pb).oid <> ALL (moved)
                           UNION ALL
                           SELECT ia FROM unnest(afters) AS ia WHERE (ia).oid = ANY (moved)) AS x)
                 WHERE p.pid = pg_backend_pid() AND p.depth = state.depth - 1;
            END IF;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        -- Never fail the user's command: say in the stream that this one is not described.
        RAISE WARNING 'walcast: cannot describe what % changed: % (%)', tg_tag, SQLERRM, SQLSTATE;
        message := format('{"version":1,"command":%s,"error":%s}',
                          to_json(tg_tag), to_json(SQLSTATE || ': ' || SQLERRM));
    END;
    IF message IS NOT NULL THEN
        -- Emitted here, not inside the block above: the block is a subtransaction of its own.
        PERFORM pg_logical_emit_message(true, 'walcast.ddl', message);
        -- Decoding files a transactional message under the end of its WAL record, which is
        -- where the next record begins: a change of another subtransaction written right after
        -- it (a DDL in a SAVEPOINT, then an INSERT) ties with it when decoding merges the
        -- subtransactions, and which comes out first is then left to the merge. One more record
        -- of this subtransaction, one that decoding skips (a sequence's), keeps them apart.
        PERFORM setval('walcast.ddl_order', 1);
    END IF;
END
$fn$;

-- ENABLE ALWAYS: they fire under session_replication_role = replica too.
DROP EVENT TRIGGER IF EXISTS walcast_ddl_start;
CREATE EVENT TRIGGER walcast_ddl_start ON ddl_command_start
    EXECUTE FUNCTION walcast.ddl_capture();
ALTER EVENT TRIGGER walcast_ddl_start ENABLE ALWAYS;
DROP EVENT TRIGGER IF EXISTS walcast_ddl_drop;
CREATE EVENT TRIGGER walcast_ddl_drop ON sql_drop
    EXECUTE FUNCTION walcast.ddl_collect_drops();
ALTER EVENT TRIGGER walcast_ddl_drop ENABLE ALWAYS;
DROP EVENT TRIGGER IF EXISTS walcast_ddl_end;
CREATE EVENT TRIGGER walcast_ddl_end ON ddl_command_end
    EXECUTE FUNCTION walcast.ddl_emit();
ALTER EVENT TRIGGER walcast_ddl_end ENABLE ALWAYS;

-- Tells a running walcast that schema events now come from the triggers.
SELECT pg_catalog.pg_logical_emit_message(true, 'walcast.ddl', '{"version":1,"control":"installed"}');
"#;

/// The uninstall script's body (one transaction): the control message first, so that a
/// running walcast reads it before the first DDL that goes undescribed.
pub const UNINSTALL: &str = r#"SET LOCAL client_min_messages = warning;
SELECT pg_catalog.pg_logical_emit_message(true, 'walcast.ddl', '{"version":1,"control":"uninstalled"}');
DROP EVENT TRIGGER IF EXISTS walcast_ddl_start;
DROP EVENT TRIGGER IF EXISTS walcast_ddl_drop;
DROP EVENT TRIGGER IF EXISTS walcast_ddl_end;
DROP SCHEMA IF EXISTS walcast CASCADE;
"#;

/// The install script's body, with the shared pieces filled in.
pub fn install() -> String {
    INSTALL
        .replace("{SKIPPED}", SKIPPED_TAGS)
        .replace("{SHAPES}", SHAPES)
}

/// `body` as a script a user can run with psql: one transaction.
pub fn script(body: &str) -> String {
    format!("BEGIN;\n{body}COMMIT;\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_script_has_every_piece_filled_in_and_emits_installed_last() {
        let sql = install();
        assert!(!sql.contains("{SKIPPED}") && !sql.contains("{SHAPES}"));
        for trigger in TRIGGERS {
            assert!(sql.contains(&format!("CREATE EVENT TRIGGER {trigger} ON")));
            assert!(sql.contains(&format!("ALTER EVENT TRIGGER {trigger} ENABLE ALWAYS;")));
        }
        for function in ["ddl_capture", "ddl_collect_drops", "ddl_emit"] {
            let head = format!("CREATE OR REPLACE FUNCTION walcast.{function}() RETURNS event_trigger\n    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp");
            assert!(sql.contains(&head), "{function}");
        }
        assert!(sql.contains(&format!("AS 'SELECT {DDL_VERSION}'")));
        let last = sql.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.contains(r#"{"version":1,"control":"installed"}"#),
            "{last}"
        );
    }

    #[test]
    fn uninstall_says_so_before_it_drops_anything() {
        let first = UNINSTALL.lines().find(|l| l.contains("walcast.ddl"));
        assert!(first
            .unwrap_or_default()
            .contains(r#"{"version":1,"control":"uninstalled"}"#));
        let drops = UNINSTALL.find("DROP ").unwrap_or(0);
        assert!(UNINSTALL.find("walcast.ddl").unwrap_or(usize::MAX) < drops);
        assert!(UNINSTALL.contains("DROP SCHEMA IF EXISTS walcast CASCADE;"));
    }
}
