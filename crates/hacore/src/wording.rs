//! Lists and counts in sentences ("a, b and c", "2 nodes"), as every
//! message of hacore writes them. A module of its own, below the rules and
//! the observed state that both word their messages with it.

/// Items as a list in a sentence: "a", "a and b", "a, b and c"; more than
/// five end with "and N more".
pub fn and_list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    match items.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        _ if items.len() > 5 => format!("{} and {} more", items[..5].join(", "), items.len() - 5),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Items as alternatives in a sentence: "a", "a or b", "a, b or c".
pub fn or_list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    match items.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        _ if items.len() > 5 => format!("{} or {} more", items[..5].join(", "), items.len() - 5),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A count with its noun: "1 node", "2 nodes", "0 nodes" (the plural adds
/// an `s`).
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// "is" for one, "are" for several.
pub fn is_are(n: usize) -> &'static str {
    if n == 1 { "is" } else { "are" }
}
