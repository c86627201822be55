//! Ids: a type prefix (`in_`, `ps_`, `rs_`, `bt_`) followed by a ULID in lowercase Crockford
//! base32, so ids sort by creation time and any unique prefix names one record.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Length of the ULID part of an id.
const ULID_LEN: usize = 26;

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    InputSet,
    Prompt,
    Run,
    Batch,
}

impl IdKind {
    pub const ALL: [IdKind; 4] = [IdKind::InputSet, IdKind::Prompt, IdKind::Run, IdKind::Batch];

    /// The prefix every id of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            IdKind::InputSet => "in_",
            IdKind::Prompt => "ps_",
            IdKind::Run => "rs_",
            IdKind::Batch => "bt_",
        }
    }

    /// The noun used in messages ("no run matches …").
    pub fn noun(self) -> &'static str {
        match self {
            IdKind::InputSet => "input set",
            IdKind::Prompt => "prompt",
            IdKind::Run => "run",
            IdKind::Batch => "batch",
        }
    }

    /// The kind whose prefix `text` starts with, if any.
    pub fn of(text: &str) -> Option<IdKind> {
        IdKind::ALL
            .into_iter()
            .find(|k| text.starts_with(k.prefix()))
    }
}

/// Why a piece of text is not an id or an id prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{text}` is not a {} id: it must start with `{}`", .kind.noun(), .kind.prefix())]
    WrongPrefix { text: String, kind: IdKind },
    #[error("`{text}` is not a valid {} id", .kind.noun())]
    Malformed { text: String, kind: IdKind },
    #[error("`{text}` is not an id prefix: ids use only the letters a-z, digits and `_`")]
    BadPrefix { text: String },
}

fn ulid_text(ulid: Ulid) -> String {
    ulid.to_string().to_ascii_lowercase()
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub const KIND: IdKind = $kind;

            /// A fresh id for now.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self::from_ulid(Ulid::new())
            }

            /// An id for a given creation time and random part (seeding, imports).
            pub fn at(time: DateTime<Utc>, random: u128) -> Self {
                let ms = u64::try_from(time.timestamp_millis()).unwrap_or(0);
                Self::from_ulid(Ulid::from_parts(ms, random))
            }

            fn from_ulid(ulid: Ulid) -> Self {
                Self(format!("{}{}", $kind.prefix(), ulid_text(ulid)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(text: &str) -> Result<Self, IdError> {
                let kind = $kind;
                let Some(rest) = text.strip_prefix(kind.prefix()) else {
                    return Err(IdError::WrongPrefix { text: text.to_owned(), kind });
                };
                if rest.len() != ULID_LEN || Ulid::from_string(rest).is_err()
                    || rest.bytes().any(|b| b.is_ascii_uppercase())
                {
                    return Err(IdError::Malformed { text: text.to_owned(), kind });
                }
                Ok(Self(text.to_owned()))
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

define_id!(
    /// Names an input set (`in_…`).
    InputSetId,
    IdKind::InputSet
);
define_id!(
    /// Names a prompt (`ps_…`).
    PromptId,
    IdKind::Prompt
);
define_id!(
    /// Names a run (`rs_…`).
    RunId,
    IdKind::Run
);
define_id!(
    /// Names a batch of runs executed in one model process (`bt_…`).
    BatchId,
    IdKind::Batch
);

/// What a user typed to name a record: a whole id or any prefix of one, as git accepts for
/// commits. With a type prefix (`rs_01j…`) only that kind is searched; without one (`01j…`)
/// every kind is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdPrefix {
    kind: Option<IdKind>,
    text: String,
}

impl IdPrefix {
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let text = text.trim().to_ascii_lowercase();
        let ok = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(IdError::BadPrefix { text });
        }
        Ok(Self {
            kind: IdKind::of(&text),
            text,
        })
    }

    /// The kind named by the prefix, when it has one.
    pub fn kind(&self) -> Option<IdKind> {
        self.kind
    }

    /// The full prefix to match against the ids of `kind`, or `None` when this prefix names
    /// another kind.
    pub fn for_kind(&self, kind: IdKind) -> Option<String> {
        match self.kind {
            Some(k) if k == kind => Some(self.text.clone()),
            Some(_) => None,
            None => Some(format!("{}{}", kind.prefix(), self.text)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for IdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_round_trip_and_sort_by_time() {
        let early = RunId::at(DateTime::from_timestamp_millis(1_000).unwrap(), u128::MAX);
        let late = RunId::at(DateTime::from_timestamp_millis(2_000).unwrap(), 0);
        assert!(early < late);
        let fresh = RunId::new();
        assert!(fresh.as_str().starts_with("rs_"));
        assert_eq!(fresh.as_str().len(), 3 + ULID_LEN);
        assert_eq!(fresh.as_str().parse::<RunId>().unwrap(), fresh);
        assert_eq!(fresh.as_str(), fresh.as_str().to_ascii_lowercase());
    }

    #[test]
    fn parsing_rejects_wrong_kind_and_garbage() {
        let prompt = PromptId::new();
        let cases: [(&str, bool); 5] = [
            (prompt.as_str(), false),
            ("rs_short", false),
            ("rs_01JD3K4W5X6Y7Z8A9B0C1D2E3F", false),
            ("rs_01jd3k4w5x6y7z8a9b0c1d2e3f", true),
            ("01jd3k4w5x6y7z8a9b0c1d2e3f", false),
        ];
        for (text, ok) in cases {
            assert_eq!(text.parse::<RunId>().is_ok(), ok, "{text}");
        }
        let err = prompt.as_str().parse::<RunId>().unwrap_err();
        assert!(err.to_string().contains("must start with `rs_`"), "{err}");
    }

    #[test]
    fn prefixes_name_a_kind_or_every_kind() {
        let cases = [
            ("rs_01j", Some(IdKind::Run), IdKind::Run, Some("rs_01j")),
            ("rs_01j", Some(IdKind::Run), IdKind::Prompt, None),
            (
                "PS_01J",
                Some(IdKind::Prompt),
                IdKind::Prompt,
                Some("ps_01j"),
            ),
            ("01j", None, IdKind::InputSet, Some("in_01j")),
            ("01j", None, IdKind::Run, Some("rs_01j")),
        ];
        for (text, kind, ask, want) in cases {
            let p = IdPrefix::parse(text).unwrap();
            assert_eq!(p.kind(), kind, "{text}");
            assert_eq!(p.for_kind(ask).as_deref(), want, "{text} as {ask:?}");
        }
    }

    #[test]
    fn prefixes_reject_characters_ids_never_contain() {
        for bad in ["", "  ", "rs_01j%", "rs-01", "ps_01j'--", "ü"] {
            assert!(IdPrefix::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
