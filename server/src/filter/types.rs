//! Column catalog entries and the comparison class of a Postgres type name (`format_type()` text,
//! which is also what wal2json prints as a column's `type`). Does not query the catalog (see
//! `catalog`).

/// One column of a table, as the catalog reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    /// `format_type(atttypid, atttypmod)` text, e.g. `character varying(20)`.
    pub type_name: String,
    pub class: TypeClass,
}

impl ColumnInfo {
    pub fn new(name: impl Into<String>, type_name: impl Into<String>) -> ColumnInfo {
        let type_name = type_name.into();
        ColumnInfo {
            name: name.into(),
            class: TypeClass::from_type_name(&type_name),
            type_name,
        }
    }
}

/// How values of a column compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeClass {
    /// int2/4/8, oid, float4/8, numeric: exact decimal comparison of the printed text.
    Number,
    Bool,
    /// `timestamp with time zone` and `timestamp without time zone`.
    Timestamp,
    Date,
    /// `time` and `time with time zone`.
    Time,
    /// `json` and `jsonb`: compared as text, no index.
    Json,
    /// Everything else (text, varchar, uuid, enums, arrays, domains...): byte-wise.
    Text,
}

impl TypeClass {
    /// Classify a type name as `format_type()` or wal2json prints it; typmods (`numeric(10,2)`,
    /// `timestamp(3) with time zone`) and internal names (`int4`, `timestamptz`) are understood,
    /// arrays (`integer[]`) and unknown types are `Text`.
    pub fn from_type_name(type_name: &str) -> TypeClass {
        let t = type_name.trim();
        if t.ends_with(']') {
            return TypeClass::Text;
        }
        // Drop a typmod wherever it sits: `numeric(10,2)`, `time(3) with time zone`.
        let mut buf = [0u8; 64];
        let Some(base) = strip_typmod(t, &mut buf) else {
            return TypeClass::Text;
        };
        match base {
            "smallint" | "integer" | "bigint" | "int" | "int2" | "int4" | "int8" | "oid"
            | "real" | "double precision" | "float4" | "float8" | "float" | "numeric"
            | "decimal" => TypeClass::Number,
            "boolean" | "bool" => TypeClass::Bool,
            "timestamp"
            | "timestamp without time zone"
            | "timestamp with time zone"
            | "timestamptz" => TypeClass::Timestamp,
            "date" => TypeClass::Date,
            "time" | "time without time zone" | "time with time zone" | "timetz" => TypeClass::Time,
            "json" | "jsonb" => TypeClass::Json,
            _ => TypeClass::Text,
        }
    }

    /// Whether values of the type carry a UTC offset that must be applied (timestamptz, timetz).
    pub(crate) fn is_zoned(type_name: &str) -> bool {
        let t = type_name.trim();
        t.ends_with("with time zone") || t == "timestamptz" || t == "timetz"
    }
}

/// The type name without its parenthesised typmod, in `buf`; `None` when it does not fit (no
/// known type name is that long) or is not ASCII.
fn strip_typmod<'b>(t: &str, buf: &'b mut [u8; 64]) -> Option<&'b str> {
    let mut n = 0;
    let mut depth = 0u32;
    for &c in t.as_bytes() {
        match c {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            // `time(3) with time zone` leaves no double space behind.
            b' ' if n > 0 && buf[n - 1] == b' ' => {}
            _ if depth == 0 => {
                *buf.get_mut(n)? = c;
                n += 1;
            }
            _ => {}
        }
    }
    std::str::from_utf8(&buf[..n]).ok().map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::TypeClass::{self, *};

    #[test]
    fn classifies_format_type_and_wal2json_names() {
        let cases = [
            ("integer", Number),
            ("bigint", Number),
            ("smallint", Number),
            ("numeric(10,2)", Number),
            ("numeric", Number),
            ("double precision", Number),
            ("real", Number),
            ("oid", Number),
            ("int4", Number),
            ("boolean", Bool),
            ("timestamp with time zone", Timestamp),
            ("timestamp(3) with time zone", Timestamp),
            ("timestamp without time zone", Timestamp),
            ("timestamp(6) without time zone", Timestamp),
            ("timestamptz", Timestamp),
            ("date", Date),
            ("time without time zone", Time),
            ("time(3) with time zone", Time),
            ("json", Json),
            ("jsonb", Json),
            ("text", Text),
            ("character varying(20)", Text),
            ("character varying", Text),
            ("uuid", Text),
            ("integer[]", Text),
            ("timestamp with time zone[]", Text),
            ("\"char\"", Text),
            ("public.mood", Text),
            ("", Text),
            (&"x".repeat(200), Text),
        ];
        for (name, class) in cases {
            assert_eq!(TypeClass::from_type_name(name), class, "{name}");
        }
    }

    #[test]
    fn zoned() {
        assert!(TypeClass::is_zoned("timestamp(3) with time zone"));
        assert!(TypeClass::is_zoned("time with time zone"));
        assert!(!TypeClass::is_zoned("timestamp without time zone"));
        assert!(!TypeClass::is_zoned("timestamp"));
    }
}
