//! Readable names for prompts, made from the prompt's meaningful words (no model involved).

/// Words that carry no meaning of their own in a prompt: English function words and the
/// quality boilerplate nearly every video prompt repeats.
const STOPWORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "across",
    "after",
    "against",
    "along",
    "among",
    "an",
    "and",
    "any",
    "are",
    "around",
    "as",
    "at",
    "be",
    "been",
    "before",
    "behind",
    "below",
    "beneath",
    "beside",
    "between",
    "beyond",
    "both",
    "but",
    "by",
    "can",
    "could",
    "do",
    "does",
    "down",
    "during",
    "each",
    "either",
    "every",
    "few",
    "for",
    "from",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "his",
    "how",
    "i",
    "in",
    "inside",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "like",
    "many",
    "more",
    "most",
    "much",
    "my",
    "near",
    "neither",
    "no",
    "nor",
    "not",
    "of",
    "off",
    "on",
    "onto",
    "or",
    "other",
    "our",
    "out",
    "outside",
    "over",
    "own",
    "per",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "throughout",
    "to",
    "toward",
    "towards",
    "under",
    "until",
    "up",
    "upon",
    "very",
    "via",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whose",
    "why",
    "will",
    "with",
    "within",
    "without",
    "would",
    "you",
    "your",
    // Prompt boilerplate.
    "video",
    "footage",
    "shot",
    "scene",
    "image",
    "clip",
    "camera",
    "view",
    "realistic",
    "photorealistic",
    "hyperrealistic",
    "cinematic",
    "high",
    "quality",
    "highly",
    "detailed",
    "resolution",
    "hd",
    "uhd",
    "4k",
    "8k",
    "stunning",
    "beautiful",
    "amazing",
    "award",
    "winning",
    "masterpiece",
    "style",
    "shows",
    "showing",
    "depicts",
    "depicting",
    "features",
    "featuring",
];

/// Most meaningful words a generated name keeps.
const MAX_WORDS: usize = 4;
/// Longest generated name, in characters, before a uniqueness suffix.
const MAX_CHARS: usize = 40;
/// Longest name a user may give.
pub const MAX_NAME_CHARS: usize = 80;

/// A short readable name from `text`: its first meaningful words, lowercase, joined by `-`.
/// Falls back to `prompt` for text without any.
pub fn name_from_text(text: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for raw in text.split(|c: char| !c.is_alphanumeric()) {
        let word = raw.to_lowercase();
        let meaningful = !word.is_empty()
            && !STOPWORDS.contains(&word.as_str())
            && !word.chars().all(|c| c.is_ascii_digit())
            && (word.chars().count() > 1 || !word.is_ascii());
        if meaningful && !words.contains(&word) {
            words.push(word);
        }
        if words.len() == MAX_WORDS {
            break;
        }
    }
    let mut name = String::new();
    for word in words {
        let extra = if name.is_empty() { 0 } else { 1 };
        if name.chars().count() + extra + word.chars().count() > MAX_CHARS {
            if name.is_empty() {
                name = word.chars().take(MAX_CHARS).collect();
            }
            break;
        }
        if !name.is_empty() {
            name.push('-');
        }
        name.push_str(&word);
    }
    if name.is_empty() {
        "prompt".to_owned()
    } else {
        name
    }
}

/// The names to try, in order, when `base` may already be taken: `base`, `base-2`, `base-3`, …
pub fn name_candidates(base: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(base.to_owned()).chain((2u32..).map(move |n| format!("{base}-{n}")))
}

/// Why a user-given name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name cannot be empty")]
    Empty,
    #[error("name is {0} characters long; keep it to {MAX_NAME_CHARS}")]
    TooLong(usize),
    #[error("a name cannot contain control characters such as newlines or tabs")]
    ControlCharacter,
    #[error(
        "`{0}` looks like an id; choose a name that does not start with `in_`, `ps_`, `rs_` or `bt_`"
    )]
    LooksLikeId(String),
}

/// Checks a name a user typed; returns it trimmed.
pub fn validate_name(name: &str) -> Result<String, NameError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let len = name.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(NameError::TooLong(len));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    if crate::id::IdKind::of(&name.to_ascii_lowercase()).is_some() {
        return Err(NameError::LooksLikeId(name.to_owned()));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_the_meaningful_words() {
        let cases = [
            (
                "A robot arm picks up a red cup in a bright kitchen",
                "robot-arm-picks-red",
            ),
            (
                "The foggy harbour at dawn, cinematic, 4K, highly detailed",
                "foggy-harbour-dawn",
            ),
            ("Snowy street snowy STREET at night", "snowy-street-night"),
            ("", "prompt"),
            ("a the of 4k 2024", "prompt"),
            ("Café in Zürich: Überraschung!", "café-zürich-überraschung"),
            ("东京 夜景 の 街", "东京-夜景-の-街"),
            (
                "supercalifragilisticexpialidociousandthensome wordy extraordinarily",
                "supercalifragilisticexpialidociousandthe",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(name_from_text(text), want, "{text}");
        }
    }

    #[test]
    fn generated_names_fit_the_limit() {
        let text = "extraordinarily magnificent thunderstorm illuminating labyrinthine canyons";
        let name = name_from_text(text);
        assert!(name.chars().count() <= MAX_CHARS, "{name}");
        assert_eq!(name, "extraordinarily-magnificent-thunderstorm");
    }

    #[test]
    fn candidates_count_up_from_two() {
        let got: Vec<String> = name_candidates("harbor").take(3).collect();
        assert_eq!(got, ["harbor", "harbor-2", "harbor-3"]);
    }

    #[test]
    fn user_names_are_checked() {
        assert_eq!(validate_name("  my shot ").unwrap(), "my shot");
        assert_eq!(validate_name(" "), Err(NameError::Empty));
        assert_eq!(validate_name("a\nb"), Err(NameError::ControlCharacter));
        assert!(matches!(
            validate_name("rs_01abc"),
            Err(NameError::LooksLikeId(_))
        ));
        assert!(matches!(
            validate_name(&"x".repeat(81)),
            Err(NameError::TooLong(81))
        ));
    }
}
