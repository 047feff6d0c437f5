//! Policies: per role (a claim of the token), the tables a subscription may name, the operations,
//! the columns (`select=` forced), row filters bound to claims in the query language
//! (`owner_id.eq.{sub}`, `tenant.eq.{claims.tenant}`), whether snapshots are allowed, and which
//! plugins and `/listen` channels the role may use. A policy rewrites a request's parameters once,
//! at subscribe time: the row filters become ordinary `filter=` conditions, AND-ed with the
//! client's own before the cohort is formed, so the hub's `eq` index serves them and no change is
//! ever checked per subscriber. Does not verify tokens (`auth` does) or evaluate changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use serde_json::Value;

use super::Principal;
use crate::config::Limits;
use crate::filter::{self, Operator, RawCondition, RawValue, Request};
use crate::vocab::Op;

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    /// Claim (dotted path) naming the token's role.
    #[serde(default = "default_role_claim")]
    role_claim: String,
    /// The role of a token without that claim; unset: such tokens are refused.
    default_role: Option<String>,
    #[serde(default)]
    roles: HashMap<String, RoleFile>,
}

fn default_role_claim() -> String {
    "role".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    #[serde(default)]
    tables: Vec<RuleFile>,
    /// Plugin names (globs) the role may attach; none by default.
    #[serde(default)]
    plugins: Vec<String>,
    /// `/listen` channels (globs, claim templates allowed); none by default.
    #[serde(default)]
    channels: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    /// Named in 403 answers; default `<role>.tables[<n>]`.
    rule: Option<String>,
    /// Glob over `schema.table`.
    table: String,
    /// Default: all four.
    ops: Option<Vec<String>>,
    /// Default: every column.
    columns: Option<Vec<String>>,
    /// Conditions in the query language; `{sub}`, `{role}`, `{claims.<path>}` are replaced by
    /// the token's claims.
    #[serde(default)]
    filters: Vec<String>,
    #[serde(default = "yes")]
    snapshot: bool,
}

fn yes() -> bool {
    true
}

/// A loaded policy.
pub struct Policy {
    role_claim: String,
    default_role: Option<String>,
    roles: HashMap<String, Role>,
}

struct Role {
    rules: Vec<Rule>,
    plugins: Vec<GlobMatcher>,
    channels: Vec<String>,
}

struct Rule {
    name: String,
    table: GlobMatcher,
    ops: u8,
    columns: Option<Vec<String>>,
    filters: Vec<Template>,
    snapshot: bool,
}

/// A row filter of a rule, split once at load: claims may appear only in the value, and are
/// spliced into the parsed condition (never into text that is parsed again), escaped for the
/// operator: an `in` item stays one item, a `like` claim matches itself literally.
struct Template {
    /// As written (for messages).
    text: String,
    column: String,
    negated: bool,
    op: Operator,
    value: String,
}

/// Private-use characters that stand for a claim while an `in` list template is split into its
/// items; a template may not contain them itself.
const MARK_OPEN: char = '\u{E000}';
const MARK_CLOSE: char = '\u{E001}';

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        if text.contains([MARK_OPEN, MARK_CLOSE]) {
            return Err("contains a private-use character walcast reserves".into());
        }
        let (column, negated, op, value) = filter::split_condition(text).map_err(|e| e.message)?;
        if column.contains(['{', '}']) {
            return Err("claims may appear only in the value of a condition".into());
        }
        let t = Template {
            text: text.to_owned(),
            column,
            negated,
            op,
            value: value.to_owned(),
        };
        // Every claim filled with a sample value must give a valid condition.
        t.condition(&|_| Some("0".into()), &Limits::DEFAULT)?;
        Ok(t)
    }

    /// The condition with the claims filled in by `value`, under `limits`.
    fn condition(
        &self,
        claim: &dyn Fn(&str) -> Option<String>,
        limits: &Limits,
    ) -> Result<RawCondition, String> {
        let column = &self.column;
        let value = match self.op {
            Operator::In => {
                // Split the list with every claim replaced by a numbered mark, then put the
                // claims' text into the items: a claim's `,` or quote is part of one item.
                let mut claims = Vec::new();
                let marked = render(&self.value, &mut |path| {
                    let v = claim(path)?;
                    claims.push(v);
                    Some(format!("{MARK_OPEN}{}{MARK_CLOSE}", claims.len() - 1))
                })?;
                let items = filter::parse_list(&marked, limits.max_in_list)
                    .map_err(|e| e.message)?
                    .ok_or_else(|| limits.in_list_too_long(column).message)?;
                RawValue::List(
                    items
                        .into_iter()
                        .map(|item| unmark(&item, &claims))
                        .collect(),
                )
            }
            Operator::Like | Operator::Ilike => {
                let pattern = render(&self.value, &mut |path| {
                    claim(path).map(|v| escape_like(&v))
                })?;
                filter::condition_value(column, self.op, &pattern, limits).map_err(|e| e.message)?
            }
            _ => {
                let text = render(&self.value, &mut |path| claim(path))?;
                filter::condition_value(column, self.op, &text, limits).map_err(|e| e.message)?
            }
        };
        Ok(RawCondition {
            column: self.column.clone(),
            negated: self.negated,
            op: self.op,
            value,
        })
    }

    /// The claim paths the template names.
    fn claims(&self) -> Vec<String> {
        let mut out = Vec::new();
        let _ = render(&self.value, &mut |path| {
            out.push(path.to_owned());
            Some(String::new())
        });
        out
    }
}

/// An `in` item with its claim marks replaced by the claims' text.
fn unmark(item: &str, claims: &[String]) -> String {
    let mut out = String::with_capacity(item.len());
    let mut rest = item;
    while let Some(open) = rest.find(MARK_OPEN) {
        out.push_str(&rest[..open]);
        let after = &rest[open + MARK_OPEN.len_utf8()..];
        let close = after.find(MARK_CLOSE).unwrap_or(after.len());
        let n: usize = after[..close].parse().unwrap_or(usize::MAX);
        out.push_str(claims.get(n).map(String::as_str).unwrap_or(""));
        rest = after.get(close + MARK_CLOSE.len_utf8()..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// A claim's text as a `like` pattern that matches exactly that text: `%`, `*`, `_` and `\`
/// escaped with `\`.
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '%' | '*' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A request the policy refuses (403 `forbidden`), or one that is malformed (its own code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn forbidden(message: String) -> Refusal {
    Refusal {
        code: "forbidden",
        message,
    }
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|cause| PolicyError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Policy::parse(&text).map_err(|message| PolicyError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses and checks a policy: globs compile, operations are known, and every row filter
    /// is a condition of the query language once its claims are filled in.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        let mut roles = HashMap::new();
        for (role_name, role) in file.roles {
            let mut rules = Vec::new();
            for (i, r) in role.tables.into_iter().enumerate() {
                let name = r.rule.unwrap_or_else(|| format!("{role_name}.tables[{i}]"));
                let table = Glob::new(&r.table)
                    .map_err(|e| format!("rule {name}: table {:?}: {e}", r.table))?
                    .compile_matcher();
                let ops = match &r.ops {
                    None => Op::ALL.iter().fold(0, |m, op| m | op.bit()),
                    Some(list) => {
                        let mut mask = 0;
                        for o in list {
                            let op = Op::ALL.iter().find(|op| op.as_str() == o).ok_or_else(|| {
                                format!(
                                    "rule {name}: ops: {o:?} is not insert, update, delete or truncate"
                                )
                            })?;
                            mask |= op.bit();
                        }
                        mask
                    }
                };
                let mut filters = Vec::with_capacity(r.filters.len());
                for f in &r.filters {
                    filters.push(
                        Template::parse(f)
                            .map_err(|e| format!("rule {name}: filter {f:?}: {e}"))?,
                    );
                }
                rules.push(Rule {
                    name,
                    table,
                    ops,
                    columns: r.columns,
                    filters,
                    snapshot: r.snapshot,
                });
            }
            let mut plugins = Vec::new();
            for p in &role.plugins {
                plugins.push(
                    Glob::new(p)
                        .map_err(|e| format!("role {role_name}: plugins: {p:?}: {e}"))?
                        .compile_matcher(),
                );
            }
            for c in &role.channels {
                let sample = render(c, &mut |_| Some("x".into()))
                    .map_err(|e| format!("role {role_name}: channels: {c:?}: {e}"))?;
                Glob::new(&sample)
                    .map_err(|e| format!("role {role_name}: channels: {c:?}: {e}"))?;
            }
            roles.insert(
                role_name,
                Role {
                    rules,
                    plugins,
                    channels: role.channels,
                },
            );
        }
        if let Some(d) = &file.default_role {
            if !roles.contains_key(d) {
                return Err(format!("default_role {d:?} has no [roles.{d}] section"));
            }
        }
        Ok(Policy {
            role_claim: file.role_claim,
            default_role: file.default_role,
            roles,
        })
    }

    fn role<'p>(&'p self, who: &Principal) -> Result<(&'p str, &'p Role), Refusal> {
        let claimed = who.claim(&self.role_claim).and_then(Value::as_str);
        let name = match (claimed, &self.default_role) {
            (Some(r), _) => r,
            (None, Some(d)) => d.as_str(),
            (None, None) => {
                return Err(forbidden(format!(
                "the token has no {:?} claim naming its role, and the policy has no default_role",
                self.role_claim
            )))
            }
        };
        match self.roles.get_key_value(name) {
            Some((k, role)) => Ok((k.as_str(), role)),
            None => Err(forbidden(format!(
                "role {name:?} has no rules in the policy (auth.policy_file)"
            ))),
        }
    }

    /// The role's rule applied to a parsed request, in place: operations narrowed (`*`) or
    /// checked, `select=` forced to the rule's columns, the guest of a plugin limited to them,
    /// and the rule's row filters appended as conditions with the claims filled in (under
    /// `limits`). Refused (403 `forbidden`, naming the rule) when the request asks for more than
    /// the rule gives or the rule cannot be applied to this token: nothing is ever let through
    /// unchanged.
    pub fn apply(
        &self,
        who: &Principal,
        request: &mut Request,
        snapshot: bool,
        limits: &Limits,
    ) -> Result<(), Refusal> {
        let (role_name, role) = self.role(who)?;
        let table = request.table.to_string();
        let Some(rule) = role.rules.iter().find(|r| r.table.is_match(&table)) else {
            return Err(forbidden(format!(
                "role {role_name:?} has no rule that allows table {table}"
            )));
        };
        let asked = request.ops;
        let ops = if request.any_op {
            asked & rule.ops
        } else {
            if asked & !rule.ops != 0 {
                return Err(forbidden(format!(
                    "rule {} allows {} on {table}, not {}",
                    rule.name,
                    op_names(rule.ops),
                    op_names(asked & !rule.ops)
                )));
            }
            asked
        };
        if ops == 0 {
            return Err(forbidden(format!(
                "rule {} allows {} on {table}",
                rule.name,
                op_names(rule.ops)
            )));
        }
        if snapshot && !rule.snapshot {
            return Err(forbidden(format!(
                "rule {} does not allow snapshots of {table}",
                rule.name
            )));
        }
        if let Some(plugin) = &request.plugin {
            if !role.plugins.iter().any(|g| g.is_match(&plugin.name)) {
                return Err(forbidden(format!(
                    "role {role_name:?} may not attach plugin {:?} (its plugins list)",
                    plugin.name
                )));
            }
        }
        let select = match (&rule.columns, &request.select) {
            (None, asked) => asked.clone(),
            (Some(allowed), None) => Some(allowed.iter().map(|c| c.as_str().into()).collect()),
            (Some(allowed), Some(asked)) => {
                if let Some(c) = asked.iter().find(|c| !allowed.iter().any(|a| a == &***c)) {
                    return Err(forbidden(format!(
                        "rule {} does not allow column {c:?} of {table} (allowed: {})",
                        rule.name,
                        allowed.join(",")
                    )));
                }
                Some(asked.clone())
            }
        };
        // A condition on a column the rule hides would reveal it through which rows arrive.
        if let Some(allowed) = &rule.columns {
            if let Some(c) = request
                .conditions
                .iter()
                .find(|c| !allowed.iter().any(|a| a == &c.column))
            {
                return Err(forbidden(format!(
                    "rule {} does not allow filtering on column {:?} of {table}",
                    rule.name, c.column
                )));
            }
        }
        let mut conditions = Vec::with_capacity(rule.filters.len());
        for f in &rule.filters {
            let condition = f
                .condition(&|path| claim_text(who, role_name, path), limits)
                .map_err(|e| {
                    forbidden(format!(
                        "rule {} cannot be applied (filter {:?}): {e}",
                        rule.name, f.text
                    ))
                })?;
            conditions.push(condition);
        }
        request.ops = ops;
        request.any_op = false;
        request.select = select;
        request.conditions.extend(conditions);
        if let Some(plugin) = &mut request.plugin {
            plugin.columns = rule.columns.clone();
        }
        Ok(())
    }

    /// The columns of `table` the principal's rule shows (`None`: every column); `Err` when no
    /// rule of its role names the table.
    pub fn visible_columns(
        &self,
        who: &Principal,
        table: &str,
    ) -> Result<Option<&[String]>, Refusal> {
        let (role_name, role) = self.role(who)?;
        match role.rules.iter().find(|r| r.table.is_match(table)) {
            Some(rule) => Ok(rule.columns.as_deref()),
            None => Err(forbidden(format!(
                "role {role_name:?} has no rule that allows table {table}"
            ))),
        }
    }

    /// The claims the principal's role binds into what it may receive (its rules' row filters
    /// and its channel patterns), each with the principal's value: a refreshed token must carry
    /// the same.
    pub fn bound_claims(&self, who: &Principal) -> Vec<(String, Option<String>)> {
        let Ok((role_name, role)) = self.role(who) else {
            return Vec::new();
        };
        let mut paths: Vec<String> = role
            .rules
            .iter()
            .flat_map(|r| r.filters.iter().flat_map(Template::claims))
            .collect();
        for c in &role.channels {
            let _ = render(c, &mut |path| {
                paths.push(path.to_owned());
                Some(String::new())
            });
        }
        paths.sort();
        paths.dedup();
        paths
            .into_iter()
            .map(|p| {
                let v = claim_text(who, role_name, &p);
                (p, v)
            })
            .collect()
    }

    /// Whether the role may follow `/listen/{channel}` (its `channels` globs, claims filled in).
    pub fn allows_channel(&self, who: &Principal, channel: &str) -> Result<(), Refusal> {
        let (role_name, role) = self.role(who)?;
        for pattern in &role.channels {
            let rendered = match render(pattern, &mut |path| {
                claim_text(who, role_name, path).map(|t| globset::escape(&t))
            }) {
                Ok(r) => r,
                Err(_) => continue,
            };
            if Glob::new(&rendered).is_ok_and(|g| g.compile_matcher().is_match(channel)) {
                return Ok(());
            }
        }
        Err(forbidden(format!(
            "role {role_name:?} may not listen to channel {channel:?} (its channels list)"
        )))
    }

    /// Whether any rule of the role names this table (for the viewer's table list).
    pub fn lists_table(&self, who: &Principal, table: &str) -> bool {
        self.role(who)
            .is_ok_and(|(_, role)| role.rules.iter().any(|r| r.table.is_match(table)))
    }

    /// The role a principal has under this policy (for the access-token refresh check).
    pub fn role_of(&self, who: &Principal) -> Option<String> {
        self.role(who).ok().map(|(name, _)| name.to_owned())
    }
}

/// The text a claim stands for in a template: strings as they are, numbers and booleans as
/// written; `None` for a missing, null, array or object claim. `{role}` is the role.
fn claim_text(who: &Principal, role: &str, path: &str) -> Option<String> {
    if path == "role" {
        return Some(role.to_owned());
    }
    match who.claim(path)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Replaces every `{path}` in `template`; `{{` and `}}` are literal braces.
fn render(template: &str, value: &mut dyn FnMut(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix('{') {
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed {{ in {template:?}"))?;
            let path = after[..end].trim();
            if path.is_empty() {
                return Err(format!("empty {{}} in {template:?}"));
            }
            let v = value(path).ok_or_else(|| {
                format!("the token has no usable claim {path:?} (a string, number or boolean)")
            })?;
            out.push_str(&v);
            rest = &after[end + 1..];
        } else {
            return Err(format!("unmatched }} in {template:?}"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn op_names(mask: u8) -> String {
    Op::ALL
        .iter()
        .filter(|op| mask & op.bit() != 0)
        .map(|op| op.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
