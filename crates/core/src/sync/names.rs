//! `synchronous_standby_names` both ways, as Patroni reads and writes it
//! (`postgresql/sync.py`: `parse_sync_standby_names`, `quote_standby_name`,
//! `set_synchronous_standby_names`).
//!
//! Names compare case-insensitively, as PostgreSQL compares them with `application_name`.

/// What a strict primary lists when no standby may be synchronous: nobody connects under this
/// name, so commits wait.
pub const STRICT_PLACEHOLDER: &str = "__patroni_strict_sync_replica_placeholder__";

/// How the listed standbys confirm a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncType {
    /// Nothing listed: asynchronous.
    Off,
    /// `FIRST n (...)` or a plain list: the first `n` connected by priority.
    Priority,
    /// `ANY n (...)`: any `n`.
    Quorum,
}

/// A parsed `synchronous_standby_names`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStandbyNames {
    /// How the list works.
    pub sync_type: SyncType,
    /// `*` is listed.
    pub has_star: bool,
    /// How many standbys must confirm.
    pub num: u32,
    /// The names listed, as written (without the strict placeholder when it is alone).
    pub members: Vec<String>,
}

// === impl SyncStandbyNames ===

impl SyncStandbyNames {
    /// Nothing listed.
    pub fn empty() -> Self {
        Self {
            sync_type: SyncType::Off,
            has_star: false,
            num: 0,
            members: Vec::new(),
        }
    }

    /// Parses a value as PostgreSQL's grammar allows, with Patroni's tokenizer.
    ///
    /// # Errors
    /// The value does not parse; the reason names the unexpected token.
    pub fn parse(value: &str) -> Result<Self, String> {
        let tokens = tokenize(value);
        if tokens.is_empty() {
            return Ok(Self::empty());
        }
        let kinds: Vec<Tok> = tokens.iter().map(|t| t.kind).collect();
        let closed = kinds.last() == Some(&Tok::ParenEnd);
        let number = |t: &Token<'_>| {
            t.text
                .parse::<u32>()
                .map_err(|_| format!("Unparsable synchronous_standby_names value {value:?}"))
        };
        let (sync_type, num, list) = match kinds.as_slice() {
            [Tok::Any, Tok::Num, Tok::ParenStart, ..] if closed => (
                SyncType::Quorum,
                number(&tokens[1])?,
                &tokens[3..tokens.len() - 1],
            ),
            [Tok::First, Tok::Num, Tok::ParenStart, ..] if closed => (
                SyncType::Priority,
                number(&tokens[1])?,
                &tokens[3..tokens.len() - 1],
            ),
            [Tok::Num, Tok::ParenStart, ..] if closed => (
                SyncType::Priority,
                number(&tokens[0])?,
                &tokens[2..tokens.len() - 1],
            ),
            _ => (SyncType::Priority, 1, &tokens[..]),
        };
        let mut has_star = false;
        let mut members: Vec<String> = Vec::new();
        for (i, t) in list.iter().enumerate() {
            let unexpected = || {
                format!(
                    "Unparsable synchronous_standby_names value {value:?}: Unexpected token {:?} at {}",
                    t.text, t.pos
                )
            };
            if i % 2 == 1 {
                if i + 1 == list.len() || t.kind != Tok::Comma {
                    return Err(unexpected());
                }
                continue;
            }
            let name = match t.kind {
                Tok::Ident | Tok::First | Tok::Any => t.text.to_owned(),
                Tok::Star => {
                    has_star = true;
                    t.text.to_owned()
                }
                Tok::DQuot => t.text[1..t.text.len() - 1].replace("\"\"", "\""),
                _ => return Err(unexpected()),
            };
            if !contains(&members, &name) {
                members.push(name);
            }
        }
        if members.len() == 1 && members[0].eq_ignore_ascii_case(STRICT_PLACEHOLDER) {
            members.clear();
        }
        Ok(Self {
            sync_type,
            has_star,
            num,
            members,
        })
    }

    /// Whether `name` is listed (case-insensitively).
    pub fn contains(&self, name: &str) -> bool {
        contains(&self.members, name)
    }
}

/// Whether `names` holds `name`, case-insensitively.
pub fn contains(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// The value that makes `sync` the synchronous standbys (`num` of them must confirm; all by
/// default), as Patroni writes it: names sorted and quoted where needed, `ANY n (...)` in
/// quorum mode, `n (...)` for several by priority, a single name alone; the strict
/// placeholder when `sync` is empty but `num ≥ 1` (or holds `*`). `None`: nothing listed.
pub fn render(sync: &[String], num: Option<u32>, quorum: bool) -> Option<String> {
    let strict = sync.iter().any(|s| s == "*") || (num.is_some_and(|n| n >= 1) && sync.is_empty());
    let names: Vec<String> = if strict {
        vec![STRICT_PLACEHOLDER.to_owned()]
    } else {
        let mut sorted: Vec<&String> = sync.iter().collect();
        sorted.sort();
        sorted.into_iter().map(|s| quote_standby_name(s)).collect()
    };
    let count = u32::try_from(names.len()).unwrap_or(u32::MAX);
    let mut param = if names.len() > 1 {
        names.join(",")
    } else {
        names.first()?.clone()
    };
    if (quorum && !names.is_empty()) || names.len() > 1 {
        let prefix = if quorum { "ANY " } else { "" };
        param = format!("{prefix}{} ({param})", num.unwrap_or(count));
    }
    Some(param)
}

/// `value` as it may stand in the list: unquoted when it is a plain identifier other than
/// `first`/`any`, else double-quoted (`"` doubled).
pub fn quote_standby_name(value: &str) -> String {
    let plain = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if plain && !value.eq_ignore_ascii_case("first") && !value.eq_ignore_ascii_case("any") {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('"', "\"\""))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    First,
    Any,
    Ident,
    DQuot,
    Star,
    Num,
    Comma,
    ParenStart,
    ParenEnd,
    Junk,
}

struct Token<'a> {
    kind: Tok,
    text: &'a str,
    pos: usize,
}

/// Patroni's tokenizer: the alternatives tried in its order at each position (so `firstname`
/// is `first` then `name`, as in Patroni), whitespace dropped.
fn tokenize(value: &str) -> Vec<Token<'_>> {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < value.len() {
        let rest = &value[pos..];
        let starts_ci = |w: &str| rest.len() >= w.len() && rest[..w.len()].eq_ignore_ascii_case(w);
        let c = rest.chars().next().unwrap_or(' ');
        let (kind, len) = if starts_ci("first") {
            (Some(Tok::First), 5)
        } else if starts_ci("any") {
            (Some(Tok::Any), 3)
        } else if c.is_whitespace() {
            let n = rest
                .char_indices()
                .find(|(_, ch)| !ch.is_whitespace())
                .map_or(rest.len(), |(i, _)| i);
            (None, n)
        } else if c.is_ascii_alphabetic() || c == '_' {
            let n = rest
                .char_indices()
                .find(|(_, ch)| !(ch.is_ascii_alphanumeric() || *ch == '_' || *ch == '$'))
                .map_or(rest.len(), |(i, _)| i);
            (Some(Tok::Ident), n)
        } else if c == '"' {
            match dquot_len(&bytes[pos..]) {
                Some(n) => (Some(Tok::DQuot), n),
                None => (Some(Tok::Junk), 1),
            }
        } else if c == '*' {
            (Some(Tok::Star), 1)
        } else if c.is_ascii_digit() {
            let n = rest
                .char_indices()
                .find(|(_, ch)| !ch.is_ascii_digit())
                .map_or(rest.len(), |(i, _)| i);
            (Some(Tok::Num), n)
        } else if c == ',' {
            (Some(Tok::Comma), 1)
        } else if c == '(' {
            (Some(Tok::ParenStart), 1)
        } else if c == ')' {
            (Some(Tok::ParenEnd), 1)
        } else {
            (Some(Tok::Junk), c.len_utf8())
        };
        if let Some(kind) = kind {
            out.push(Token {
                kind,
                text: &value[pos..pos + len],
                pos,
            });
        }
        pos += len;
    }
    out
}

/// Length of a double-quoted name at the start of `b` (`"` … `"`, `""` inside), if closed.
fn dquot_len(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < b.len() {
        if b[i] == b'"' {
            if b.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &str) -> Vec<String> {
        SyncStandbyNames::parse(v).expect("parses").members
    }

    /// Patroni's doctests of `parse_sync_standby_names`.
    #[test]
    fn parses_as_patroni() {
        assert_eq!(
            SyncStandbyNames::parse("").unwrap().sync_type,
            SyncType::Off
        );
        let first = SyncStandbyNames::parse("FiRsT").unwrap();
        assert_eq!(first.sync_type, SyncType::Priority);
        assert!(first.contains("first"));
        assert_eq!(names("\"1\""), ["1"]);
        assert_eq!(names(" a , b "), ["a", "b"]);
        assert_eq!(SyncStandbyNames::parse(" a , b ").unwrap().num, 1);
        let any = SyncStandbyNames::parse("ANY 4(\"a\",*,b)").unwrap();
        assert!(any.has_star);
        assert_eq!((any.sync_type, any.num), (SyncType::Quorum, 4));
        assert!(names("ANY 1(__patroni_strict_sync_replica_placeholder__)").is_empty());
        let two = SyncStandbyNames::parse("2 (\"pg-1\", pg_2)").unwrap();
        assert_eq!((two.sync_type, two.num), (SyncType::Priority, 2));
        assert_eq!(two.members, ["pg-1", "pg_2"]);
        assert_eq!(names("\"a\"\"b\""), ["a\"b"]);
        for bad in [
            "1",
            "a,",
            "ANY 4(\"a\" b,\"c c\")",
            "FIRST 4(\"a\",)",
            "2 (,)",
            "a b",
        ] {
            assert!(SyncStandbyNames::parse(bad).is_err(), "{bad}");
        }
    }

    /// What Patroni writes: sorted, quoted where needed, `n (...)` for several, `ANY n (...)`
    /// in quorum mode, the placeholder when strict and empty; round trip through `parse`.
    #[test]
    fn renders_as_patroni() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(render(&[], None, false), None);
        assert_eq!(
            render(&s(&["pg-1"]), None, false).as_deref(),
            Some("\"pg-1\"")
        );
        assert_eq!(
            render(&s(&["b", "a"]), None, false).as_deref(),
            Some("2 (a,b)")
        );
        assert_eq!(
            render(&s(&["b", "a"]), Some(1), true).as_deref(),
            Some("ANY 1 (a,b)")
        );
        assert_eq!(
            render(&s(&["a"]), Some(1), true).as_deref(),
            Some("ANY 1 (a)")
        );
        assert_eq!(
            render(&[], Some(1), false).as_deref(),
            Some(STRICT_PLACEHOLDER)
        );
        assert_eq!(
            render(&s(&["first"]), None, false).as_deref(),
            Some("\"first\"")
        );
        let v = render(&s(&["pg-2", "pg-1"]), None, false).expect("listed");
        let parsed = SyncStandbyNames::parse(&v).expect("parses back");
        assert_eq!(parsed.members, ["pg-1", "pg-2"]);
        assert_eq!(parsed.num, 2);
    }
}
