//! The text guardrail's blocklist stage: an empty prompt or one containing a blocked word is
//! refused with Cosmos's `GUARDRAIL BLOCKED: BLOCKLIST: …` reasons.

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Why the blocklist refuses `prompt`, or `None` when it passes.
pub fn blocked(prompt: Option<&str>, blocklist: &[String]) -> Option<String> {
    let prompt = prompt.unwrap_or_default();
    if prompt.trim().is_empty() {
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
                "BLOCKLIST: Prompt blocked by exact match blocklist: {entry}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_whole_words_and_empty_prompts() {
        let list = vec!["forbiddenfruit".to_owned(), "red door".to_owned()];
        assert_eq!(
            blocked(None, &list).as_deref(),
            Some("BLOCKLIST: Input is empty")
        );
        assert_eq!(
            blocked(Some("  "), &list).as_deref(),
            Some("BLOCKLIST: Input is empty")
        );
        assert!(blocked(Some("A ForbiddenFruit, ripe."), &list).is_some());
        assert!(blocked(Some("the RED  door opens"), &list).is_some());
        assert_eq!(
            blocked(Some("forbiddenfruits and a red doormat"), &list),
            None
        );
    }
}
