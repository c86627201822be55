//! Per-modality control weights (`--weights vis=0.3,edge=0.4`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::modality::{Hint, UnknownHint};

/// Control weights in Cosmos's hint order, each non-negative and finite. Serialised in the
/// form users type (`"vis=0.3,edge=0.4"`); the empty string is no weights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Weights(Vec<(Hint, f64)>);

/// Why a weights string was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    #[error("no weights given: write them as `vis=0.3,edge=0.4`")]
    Empty,
    #[error("`{0}` is not `modality=weight` (e.g. `depth=0.25`)")]
    NotAPair(String),
    #[error(transparent)]
    UnknownModality(#[from] UnknownHint),
    #[error("weight `{value}` for `{hint}` is not a number")]
    NotANumber { hint: Hint, value: String },
    #[error("weight {value} for `{hint}` must be a non-negative, finite number")]
    OutOfRange { hint: Hint, value: f64 },
    #[error("`{0}` is given twice")]
    Duplicate(Hint),
}

impl Weights {
    /// Builds weights, checking each one.
    pub fn new(pairs: impl IntoIterator<Item = (Hint, f64)>) -> Result<Self, WeightsError> {
        let mut out: Vec<(Hint, f64)> = Vec::new();
        for (hint, value) in pairs {
            if !(value.is_finite() && value >= 0.0) {
                return Err(WeightsError::OutOfRange { hint, value });
            }
            if out.iter().any(|(h, _)| *h == hint) {
                return Err(WeightsError::Duplicate(hint));
            }
            out.push((hint, value));
        }
        out.sort_by_key(|(h, _)| *h);
        Ok(Self(out))
    }

    pub fn iter(&self) -> impl Iterator<Item = (Hint, f64)> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, hint: Hint) -> Option<f64> {
        self.0.iter().find(|(h, _)| *h == hint).map(|(_, w)| *w)
    }

    pub fn sum(&self) -> f64 {
        self.0.iter().map(|(_, w)| w).sum()
    }

    /// The weights Cosmos actually applies: divided by `max(sum, 1)`.
    pub fn effective(&self) -> Weights {
        let div = self.sum().max(1.0);
        Weights(self.0.iter().map(|(h, w)| (*h, w / div)).collect())
    }

    /// Equal weights over `hints`, summing to 1 (rounded to 3 decimals).
    pub fn equal(hints: &[Hint]) -> Weights {
        let n = hints.len().max(1) as f64;
        let w = (1000.0 / n).floor() / 1000.0;
        Weights::new(hints.iter().map(|h| (*h, w))).unwrap_or_default()
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(h, w)| format!("{h}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for Weights {
    type Err = WeightsError;

    fn from_str(s: &str) -> Result<Self, WeightsError> {
        let mut pairs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| WeightsError::NotAPair(part.to_owned()))?;
            let hint: Hint = name.parse()?;
            let value = value.trim();
            let number: f64 = value.parse().map_err(|_| WeightsError::NotANumber {
                hint,
                value: value.to_owned(),
            })?;
            pairs.push((hint, number));
        }
        if pairs.is_empty() {
            return Err(WeightsError::Empty);
        }
        Weights::new(pairs)
    }
}

impl TryFrom<String> for Weights {
    type Error = WeightsError;

    fn try_from(text: String) -> Result<Self, WeightsError> {
        if text.trim().is_empty() {
            Ok(Weights::default())
        } else {
            text.parse()
        }
    }
}

impl From<Weights> for String {
    fn from(w: Weights) -> Self {
        w.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_table() {
        let ok = [
            ("vis=0.3,edge=0.4", "vis=0.3,edge=0.4"),
            ("edge=0.4, vis=0.3", "vis=0.3,edge=0.4"),
            ("DEPTH=1", "depth=1"),
            ("seg=0,", "seg=0"),
        ];
        for (input, want) in ok {
            assert_eq!(
                input.parse::<Weights>().unwrap().to_string(),
                want,
                "{input}"
            );
        }
        let bad = [
            ("", "no weights given"),
            ("vis", "is not `modality=weight`"),
            ("color=0.5", "unknown modality `color`"),
            ("vis=abc", "weight `abc` for `vis` is not a number"),
            ("vis=-0.1", "must be a non-negative"),
            ("vis=inf", "must be a non-negative"),
            ("vis=NaN", "must be a non-negative"),
            ("vis=0.1,vis=0.2", "`vis` is given twice"),
        ];
        for (input, want) in bad {
            let err = input.parse::<Weights>().unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    #[test]
    fn weights_serialise_as_typed() {
        let w: Weights = "edge=0.4,vis=0.3".parse().unwrap();
        assert_eq!(serde_json::to_string(&w).unwrap(), "\"vis=0.3,edge=0.4\"");
        assert_eq!(
            serde_json::from_str::<Weights>("\"vis=0.3,edge=0.4\"").unwrap(),
            w
        );
        assert_eq!(
            serde_json::from_str::<Weights>("\"\"").unwrap(),
            Weights::default()
        );
        assert!(serde_json::from_str::<Weights>("\"vis=-1\"").is_err());
    }

    #[test]
    fn effective_weights_normalise_only_above_one() {
        let w: Weights = "vis=0.6,edge=0.6".parse().unwrap();
        let eff = w.effective();
        assert!((eff.get(Hint::Vis).unwrap() - 0.5).abs() < 1e-12);
        let small: Weights = "vis=0.2,edge=0.3".parse().unwrap();
        assert_eq!(small.effective(), small);
    }

    #[test]
    fn equal_weights_sum_to_at_most_one() {
        let w = Weights::equal(&[Hint::Depth, Hint::Seg, Hint::Edge]);
        assert_eq!(w.to_string(), "seg=0.333,edge=0.333,depth=0.333");
        assert!(w.sum() <= 1.0);
    }
}
