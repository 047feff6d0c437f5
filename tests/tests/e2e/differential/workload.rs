//! The differential workload: schema, statements and COPY data covering every built-in type
//! family, quoted identifiers, unchanged TOAST, each replica identity, COPY and a closing TRUNCATE.
//! Knows nothing about how changes are read or compared.

/// Every table of the workload as (schema, name).
pub(super) const TABLES: [(&str, &str); 11] = [
    ("public", "numbers"),
    ("public", "texts"),
    ("public", "times"),
    ("public", "docs"),
    ("Sales \"Dept\".v2", "Odd.Table \"Q\" Name"),
    ("public", "MixedCase"),
    ("public", "nothing_ri"),
    ("public", "no_key"),
    ("public", "toasty"),
    ("public", "toasty_full"),
    ("public", "bulk"),
];

pub(super) const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy "quoted"', 'with,comma and space');
CREATE DOMAIN short_text AS varchar(20) CHECK (VALUE <> 'forbidden');
CREATE DOMAIN positive_numeric AS numeric CHECK (VALUE > 0);
CREATE TYPE pair AS (label text, amount numeric, at timestamptz, tags text[]);
CREATE TABLE numbers (
    id int PRIMARY KEY, label text NOT NULL,
    n numeric, n_fixed numeric(40, 20), pn positive_numeric, f4 real, f8 double precision,
    i2 smallint, i4 integer, i8 bigint, o oid, m money,
    na numeric[], ia integer[], fa double precision[]);
CREATE TABLE texts (
    id int PRIMARY KEY, t text, vc varchar(60), c char(6), nm name, bin bytea, u uuid, b boolean,
    e mood, d short_text, ip inet, net cidr, mac macaddr, mac8 macaddr8, bits bit(8), vbits varbit,
    tv tsvector, tq tsquery, pt point, bx box, circ circle, poly polygon, x xml, ta text[]);
ALTER TABLE texts REPLICA IDENTITY FULL;
CREATE TABLE times (
    id int NOT NULL, code text NOT NULL, d date, t time, ttz timetz, ts timestamp,
    tstz timestamptz, iv interval, r4 int4range, r8 int8range, rn numrange, rts tsrange,
    rtstz tstzrange, rd daterange, mr int4multirange);
CREATE UNIQUE INDEX times_code_id ON times (code, id);
ALTER TABLE times REPLICA IDENTITY USING INDEX times_code_id;
CREATE TABLE docs (id int PRIMARY KEY, j json, jb jsonb, pr pair, prs pair[], ja json[], jba jsonb[]);
CREATE SCHEMA "Sales ""Dept"".v2";
CREATE TABLE "Sales ""Dept"".v2"."Odd.Table ""Q"" Name" (
    "Key Col" int PRIMARY KEY, "dot.col" text, "Quote""Col" numeric, "UPPER" boolean,
    "ünï cödé 😀" text, "colon:comma,col" int);
CREATE TABLE "MixedCase" ("Id" int PRIMARY KEY, "Value" text);
CREATE TABLE nothing_ri (id int PRIMARY KEY, v text);
ALTER TABLE nothing_ri REPLICA IDENTITY NOTHING;
CREATE TABLE no_key (v text);
-- EXTERNAL: stored out of line and never compressed, so 12,800 hex characters are always TOASTed.
CREATE TABLE toasty (id int PRIMARY KEY, note text, big text);
ALTER TABLE toasty ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE toasty_full (id int PRIMARY KEY, note text, big text);
ALTER TABLE toasty_full ALTER COLUMN big SET STORAGE EXTERNAL;
ALTER TABLE toasty_full REPLICA IDENTITY FULL;
CREATE TABLE bulk (id int PRIMARY KEY, n numeric, t text, doc jsonb, at timestamptz);
"#;

/// Inserts. One extreme per row where a row may fail on its own (a change walcast cannot decode
/// is lost whole).
pub(super) const INSERTS: &str = r#"
INSERT INTO numbers (id, label, n) VALUES
    (1, 'numeric 1e400', '1e400'), (2, 'numeric -1e400', '-1e400'),
    (3, 'numeric 1e-400', '1e-400'), (4, 'numeric -1e-400', '-1e-400'),
    (5, 'numeric NaN', 'NaN'), (6, 'numeric Infinity', 'Infinity'),
    (7, 'numeric -Infinity', '-Infinity'),
    (8, 'numeric precise', '12345678901234567890.12345678901234567890'),
    (9, 'numeric negative precise', '-98765432109876543210.00000000000000000001'),
    (10, 'numeric scale kept', '0.000'), (11, 'numeric beyond u64', '184467440737095516150');
INSERT INTO numbers (id, label, n_fixed, pn) VALUES
    (12, 'numeric(40,20) and domain', 12345678901234567890.12345678901234567890,
     '0.00000000000000000000000000000001');
INSERT INTO numbers (id, label, f4, f8) VALUES
    (20, 'float max', '3.4028235e38', '1.7976931348623157e308'),
    (21, 'float -max', '-3.4028235e38', '-1.7976931348623157e308'),
    (22, 'float min normal', '1.1754944e-38', '2.2250738585072014e-308'),
    (23, 'float min subnormal', '1e-45', '5e-324'),
    (24, 'float NaN', 'NaN', 'NaN'), (25, 'float Infinity', 'Infinity', 'Infinity'),
    (26, 'float -Infinity', '-Infinity', '-Infinity'), (27, 'float shortest', '0.1', '0.1'),
    (28, 'float -0', '-0', '-0'), (29, 'float exponent', '1e30', '1e300'),
    (30, 'float odd integer', '16777216', '9007199254740993');
INSERT INTO numbers (id, label, i2, i4, i8, o, m) VALUES
    (40, 'int min', -32768, -2147483648, -9223372036854775808, 0, '-92233720368547758.08'),
    (41, 'int max', 32767, 2147483647, 9223372036854775807, 4294967295, '92233720368547758.07'),
    (42, 'int zero', 0, 0, 0, 1, 0);
INSERT INTO numbers (id, label, na, ia, fa) VALUES
    (50, 'arrays',
     ARRAY['1e400', '-1e-400', 'NaN', 'Infinity', '-Infinity',
           '12345678901234567890.12345678901234567890']::numeric[],
     ARRAY[-2147483648, 0, NULL, 2147483647],
     ARRAY['NaN', 'Infinity', '-Infinity', '5e-324', '-0', '1.7976931348623157e308']::float8[]),
    (51, 'empty and nested arrays', '{}', '{{1,2},{3,4}}', '{}');

INSERT INTO texts VALUES
    (1, E'quote " apostrophe '' backslash \\ slash / tab \t newline \n cr \r bell \x07 esc \x1b del \x7f',
     E'emoji 😀 flag 🇯🇵 zwj 👩‍💻 e\u0301 \u2028 \u2029', 'ab', 'a name',
     '\xdeadbeef00ff'::bytea, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 'happy "quoted"',
     'domain text', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
     B'10101010', B'1', 'a:1 ''quoted token'':2 b:3', 'a & !b | c:*', '(1.5,-2.25)',
     '((0,0),(1,1))', '<(0,0),1.5>', '((0,0),(1,0),(0,1))', '<a attr="x &amp; y">text<b/></a>',
     ARRAY['a"b', E'c\\d', NULL, '', 'with space', '{braces}', 'NULL']);
INSERT INTO texts (id) VALUES (2);
INSERT INTO texts VALUES
    (3, '', '', '', '', '', '00000000-0000-0000-0000-000000000000', false, 'sad', '', '::1',
     '::/0', '00:00:00:00:00:00', '00:00:00:00:00:00:00:00', B'00000000', B'', '', '', '(0,0)',
     '((0,0),(0,0))', '<(0,0),0>', '((0,0))', '', '{}');

INSERT INTO times VALUES
    (1, 'regular', '2026-11-22', '23:59:59.999999', '12:34:56.789+05:30',
     '2026-11-22 01:02:03.456789', '2026-11-22 01:02:03.456789+09',
     '1 year 2 mons 3 days 04:05:06.789', '[1,10)', '[-9223372036854775808,9223372036854775807)',
     '[-1.5,12345678901234567890.5]', '[2026-01-01 00:00,2026-12-31 23:59:59.999999)',
     '[2020-01-01 00:00+05:30,infinity)', '[2026-01-01,2026-02-01)', '{[1,3),[5,7)}'),
    (2, 'infinite', 'infinity', '24:00:00', '00:00:00-14:59', 'infinity', '-infinity',
     '-178000000 years', 'empty', '(,)', '(,0]', '(,infinity)', 'empty', '[-infinity,infinity]', '{}'),
    (3, 'historic', '0044-03-15 BC', '00:00:00', '23:59:59.999999+14', '4713-01-01 00:00:00 BC',
     '1900-01-01 00:00:00+00', '-1 days +00:00:00.000001', NULL, NULL, NULL, NULL, NULL, NULL, NULL);

INSERT INTO docs (id, j, jb) VALUES
    (1, '{"a": 1e400, "a": "duplicate key", "neg zero": -0.0, "exp": 1E+2, "s": "quote \" backslash \\ tab \t nl \n \u00e9 \ud83d\ude00 😀", "nested": {"deep": [[[]]]}}',
        '{"a": 1e400, "a": "duplicate key", "neg zero": -0.0, "exp": 1E+2, "s": "quote \" backslash \\ tab \t nl \n \u00e9 \ud83d\ude00 😀", "nested": {"deep": [[[]]]}}'),
    (2, '[1, 2.50, 12345678901234567890123, -1e-400, 1.7976931348623157e309, [], {}, null, true, false]',
        '[1, 2.50, 12345678901234567890123, -1e-400, 1.7976931348623157e309, [], {}, null, true, false]'),
    (3, '"a string with \"escapes\" and \u0000"', '"plain"'),
    (4, '12345678901234567890.12345678901234567890', '1e-400'),
    (5, 'null', 'null'),
    (6, NULL, NULL),
    (7, ' { "spaced" :  [ 1 ,2 ] } ', '{"b": 2, "a": 1, "aa": 0}');
INSERT INTO docs (id, pr, prs, ja, jba) VALUES
    (8, ROW('label "q", comma', 12345678901234567890.5, '2026-11-22 01:02:03+00', ARRAY['x', 'y z'])::pair,
        ARRAY[ROW('a', 1, NULL, NULL)::pair, ROW(NULL, NULL, NULL, '{}')::pair],
        ARRAY['{"k": 1e400}', '[1, "two"]']::json[], ARRAY['{"k": 1e-400}', 'null']::jsonb[]);

INSERT INTO "Sales ""Dept"".v2"."Odd.Table ""Q"" Name" VALUES
    (1, 'dot', 1.5, true, 'ünïcödé', 7), (2, NULL, '1e-20', false, '😀', NULL);
INSERT INTO "MixedCase" VALUES (1, 'Upper');
INSERT INTO nothing_ri VALUES (1, 'a'), (2, 'b');
INSERT INTO no_key VALUES ('a'), ('b');
INSERT INTO toasty SELECT 1, 'inserted', string_agg(md5(g::text), '') FROM generate_series(1, 400) g;
INSERT INTO toasty_full
    SELECT 1, 'inserted', string_agg(md5(g::text || 'full'), '') FROM generate_series(1, 400) g;
"#;

/// Updates and deletes under every replica identity, in one transaction across tables.
pub(super) const CHANGES: &str = r#"
BEGIN;
UPDATE numbers SET n = -n WHERE id IN (1, 8);
UPDATE numbers SET f8 = f8 / 2, label = label || ' halved' WHERE id = 20;
UPDATE numbers SET id = 140 WHERE id = 40;
DELETE FROM numbers WHERE id IN (2, 24, 41);
UPDATE texts SET t = t || ' (edited)', b = NOT b WHERE id = 1;
UPDATE texts SET e = 'with,comma and space' WHERE id = 2;
DELETE FROM texts WHERE id = 3;
UPDATE times SET code = 'renamed' WHERE id = 1;
UPDATE times SET iv = '1 microsecond' WHERE id = 2;
DELETE FROM times WHERE id = 3;
UPDATE docs SET jb = jb || '{"added": 1.10}' WHERE id = 1;
UPDATE docs SET j = '{"replaced": true}' WHERE id = 4;
DELETE FROM docs WHERE id = 2;
COMMIT;
UPDATE "Sales ""Dept"".v2"."Odd.Table ""Q"" Name" SET "dot.col" = 'dot (edited)' WHERE "Key Col" = 1;
UPDATE "Sales ""Dept"".v2"."Odd.Table ""Q"" Name" SET "Key Col" = 3 WHERE "Key Col" = 2;
DELETE FROM "Sales ""Dept"".v2"."Odd.Table ""Q"" Name" WHERE "Key Col" = 1;
UPDATE "MixedCase" SET "Value" = 'lower';
DELETE FROM "MixedCase";
UPDATE nothing_ri SET v = 'c' WHERE id = 1;
DELETE FROM nothing_ri WHERE id = 2;
UPDATE no_key SET v = 'c' WHERE v = 'a';
DELETE FROM no_key WHERE v = 'b';
UPDATE toasty SET note = 'note changed, big unchanged' WHERE id = 1;
UPDATE toasty_full SET note = 'note changed, big unchanged' WHERE id = 1;
UPDATE toasty SET big = big || 'x', note = 'big changed' WHERE id = 1;
DELETE FROM toasty WHERE id = 1;
DELETE FROM toasty_full WHERE id = 1;
"#;

pub(super) const BULK_ROWS: usize = 3000;

/// COPY text format: backslash, tab, newline and carriage return escaped.
fn copy_field(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

pub(super) fn bulk_copy_data() -> Vec<u8> {
    let mut out = String::new();
    for i in 1..=BULK_ROWS {
        let fields = [
            i.to_string(),
            format!("{}{i:08}.{i:020}", "9".repeat(20)),
            format!("row {i}\twith tab, newline\nbackslash \\ quote \" é 😀"),
            format!(
                r#"{{"i": {i}, "big": 1{}, "s": "é \" \\"}}"#,
                "0".repeat(30)
            ),
            format!("2026-11-22 00:{:02}:{:02}.{i:06}+00", i / 60 % 60, i % 60),
        ];
        let line: Vec<String> = fields.iter().map(|f| copy_field(f)).collect();
        out.push_str(&line.join("\t"));
        out.push('\n');
    }
    out.into_bytes()
}

pub(super) const AFTER_COPY: &str = "
UPDATE bulk SET t = 'edited' WHERE id = 1500;
DELETE FROM bulk WHERE id % 1000 = 0;";

/// The last change of every table: each stream is read up to its truncate.
pub(super) fn fence_sql() -> String {
    let names: Vec<String> = TABLES
        .iter()
        .map(|(s, t)| format!("{}.{}", quote_ident(s), quote_ident(t)))
        .collect();
    format!("TRUNCATE {}", names.join(", "))
}

pub(super) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
