//! The text guardrail's blocklist stage, with Cosmos's `GUARDRAIL BLOCKED: BLOCKLIST: …`
//! reasons: an empty prompt, a blocked word or phrase matched exactly, or one matched nearly
//! (a window of as many prompt words, similar enough by a Ratcliff/Obershelp ratio).

/// How similar a window of the prompt must be to a blocked entry to count as a partial match.
const PARTIAL_RATIO: f64 = 0.95;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Characters the two have in common, found as Python's `SequenceMatcher` finds them: the
/// longest common block, then the same on each side of it.
fn matching(a: &[char], b: &[char]) -> usize {
    let (mut best, mut at_a, mut at_b) = (0, 0, 0);
    for i in 0..a.len() {
        for j in 0..b.len() {
            let mut k = 0;
            while i + k < a.len() && j + k < b.len() && a[i + k] == b[j + k] {
                k += 1;
            }
            if k > best {
                (best, at_a, at_b) = (k, i, j);
            }
        }
    }
    if best == 0 {
        return 0;
    }
    best + matching(&a[..at_a], &b[..at_b]) + matching(&a[at_a + best..], &b[at_b + best..])
}

fn ratio(a: &str, b: &str) -> f64 {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    2.0 * matching(&a, &b) as f64 / (a.len() + b.len()) as f64
}

/// Why the blocklist refuses `prompt`, or `None` when it passes.
pub fn blocked(prompt: Option<&str>, blocklist: &[String]) -> Option<String> {
    let prompt = prompt.unwrap_or_default();
    // `if not input_prompt`: only the empty string is empty; spaces are words to check.
    if prompt.is_empty() {
        return Some("BLOCKLIST: Input is empty".to_owned());
    }
    let said = words(prompt);
    for entry in blocklist {
        let entry_words = words(entry);
        if entry_words.is_empty() {
            continue;
        }
        if said
            .windows(entry_words.len())
            .any(|w| w == entry_words.as_slice())
        {
            return Some(format!(
                "BLOCKLIST: Prompt blocked by exact match blocklist: Prompt: {prompt}, Exact Match Word: {entry}"
            ));
        }
    }
    for entry in blocklist {
        let entry_words = words(entry);
        if entry_words.is_empty() {
            continue;
        }
        let target = entry_words.join(" ");
        if let Some(window) = said
            .windows(entry_words.len())
            .map(|w| w.join(" "))
            .find(|w| ratio(w, &target) >= PARTIAL_RATIO)
        {
            return Some(format!(
                "BLOCKLIST: Prompt blocked by partial match blocklist: Prompt: {prompt}, Partial Match Word: {window}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_empty_prompts_exact_and_near_matches_with_cosmos_s_messages() {
        let list = vec!["forbiddenfruit".to_owned(), "red door".to_owned()];
        assert_eq!(
            blocked(None, &list).as_deref(),
            Some("BLOCKLIST: Input is empty")
        );
        assert_eq!(blocked(Some("  "), &list), None, "spaces are not empty");
        assert_eq!(
            blocked(Some("A ForbiddenFruit, ripe."), &list).as_deref(),
            Some(
                "BLOCKLIST: Prompt blocked by exact match blocklist: Prompt: A ForbiddenFruit, ripe., Exact Match Word: forbiddenfruit"
            )
        );
        assert!(blocked(Some("the RED  door opens"), &list).is_some());
        assert_eq!(
            blocked(Some("two forbiddenfruits"), &list).as_deref(),
            Some(
                "BLOCKLIST: Prompt blocked by partial match blocklist: Prompt: two forbiddenfruits, Partial Match Word: forbiddenfruits"
            )
        );
        assert_eq!(blocked(Some("a red doormat"), &list), None);
    }

    #[test]
    fn the_ratio_is_sequence_matcher_s() {
        assert_eq!(ratio("abcd", "abcd"), 1.0);
        assert!((ratio("forbiddenfruits", "forbiddenfruit") - 28.0 / 29.0).abs() < 1e-9);
        assert_eq!(ratio("abc", "xyz"), 0.0);
    }
}
