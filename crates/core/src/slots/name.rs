//! Replication slot names derived from member names, exactly as Patroni derives them
//! (`slot_name_from_member_name`), so a mixed Patroni / patroni-rs cluster agrees on them.

/// Longest slot name PostgreSQL accepts (`NAMEDATALEN - 1`).
pub const MAX_SLOT_NAME_LEN: usize = 63;

/// The physical replication slot a primary keeps for member `member_name`.
///
/// Lower case; `-` and `.` become `_`; any other character outside `[a-z0-9_]` becomes `u`
/// followed by its code point in decimal, at least 4 digits (`ü` → `u0252`); cut to 63
/// characters. Different members can map to the same slot (`a-b` and `a.b`): Patroni only logs
/// such collisions, and so should the caller.
pub fn slot_name_from_member_name(member_name: &str) -> String {
    let mut out = String::with_capacity(member_name.len());
    for c in member_name.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => out.push(c),
            '-' | '.' => out.push('_'),
            other => out.push_str(&format!("u{:04}", u32::from(other))),
        }
    }
    // Only ASCII is left, so byte length is character length.
    out.truncate(MAX_SLOT_NAME_LEN);
    out
}

/// Whether `name` is a valid slot name as Patroni checks permanent slots (`^[a-z0-9_]{1,63}$`).
pub fn is_valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SLOT_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping matches Patroni's for hostnames, StatefulSet pod names and odd characters.
    #[test]
    fn member_names_map_like_patroni() {
        assert_eq!(slot_name_from_member_name("pg-0"), "pg_0");
        assert_eq!(
            slot_name_from_member_name("Node.Example-1"),
            "node_example_1"
        );
        assert_eq!(slot_name_from_member_name("a b"), "au0032b");
        assert_eq!(slot_name_from_member_name("Müller"), "mu0252ller");
        assert_eq!(slot_name_from_member_name("x@y"), "xu0064y");
        // Code points above 9999 print all their digits, as Python's "{:04d}" does.
        assert_eq!(slot_name_from_member_name("日"), "u26085");
    }

    /// Names are cut to 63 characters, even when an escape straddles the limit.
    #[test]
    fn long_names_are_cut_to_63() {
        let long = "a".repeat(70);
        assert_eq!(slot_name_from_member_name(&long), "a".repeat(63));
        let straddling = format!("{}@", "a".repeat(61));
        assert_eq!(
            slot_name_from_member_name(&straddling),
            format!("{}u0", "a".repeat(61))
        );
        assert!(is_valid_slot_name(&slot_name_from_member_name(&straddling)));
    }

    /// Patroni's permanent-slot name rule.
    #[test]
    fn slot_name_validity() {
        assert!(is_valid_slot_name("pg_0"));
        assert!(!is_valid_slot_name(""));
        assert!(!is_valid_slot_name("Pg0"));
        assert!(!is_valid_slot_name("pg-0"));
        assert!(!is_valid_slot_name(&"a".repeat(64)));
    }
}
