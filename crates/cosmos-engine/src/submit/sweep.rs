//! Sweeps: `--seed 1,2,3`, `--seeds 1..8`, `--weights vis=0.2:0.6:0.2,edge=0.5` (a grid from
//! ranges) and `--from-file` (TOML `[[run]]` tables or JSON lines), expanded into one run per
//! combination.

use std::path::Path;

use crate::error::{EngineError, EngineResult as Result};

macro_rules! bail {
    ($($t:tt)*) => {
        return Err(EngineError::Invalid(format!($($t)*)))
    };
}

/// Turns a parse failure into an invalid-input error with `what` said first.
trait Context<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E> Context<T> for std::result::Result<T, E> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|_| EngineError::Invalid(what()))
    }
}

impl<T> Context<T> for Option<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| EngineError::Invalid(what()))
    }
}
use serde::Deserialize;

use cosmos_core::Weights;

use super::RunEntry;

/// At most this many runs from one submission unless it says otherwise (`--max-runs`): a
/// typo in a range should not flood the queue.
pub const MAX_RUNS: usize = 10_000;

/// Seeds from `--seed` (one or a comma list) and `--seeds A..B` (inclusive).
pub fn seeds(list: Option<&str>, range: Option<&str>, max: usize) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    if let Some(list) = list {
        for part in list.split(',') {
            let part = part.trim();
            out.push(part.parse::<u32>().with_context(|| {
                format!("`{part}` in --seed is not a seed: give whole numbers, e.g. --seed 1,2,3")
            })?);
        }
    }
    if let Some(range) = range {
        let Some((a, b)) = range.split_once("..") else {
            bail!("--seeds takes a range FIRST..LAST, e.g. --seeds 1..8 (got `{range}`)");
        };
        let parse = |v: &str| {
            v.trim().parse::<u32>().with_context(|| {
                format!("`{v}` in --seeds {range} is not a seed: use whole numbers, e.g. 1..8")
            })
        };
        let (a, b) = (parse(a)?, parse(b.trim_start_matches('='))?);
        if b < a {
            bail!("--seeds {range} is empty: the last seed comes first");
        }
        if (b - a) as usize >= max {
            bail!(
                "--seeds {range} makes {} runs, more than the {max} one submission may queue: pass --max-runs {} if you mean it",
                u64::from(b - a) + 1,
                u64::from(b - a) + 1
            );
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// The weights of every grid point: `key=v` keeps a value, `key=start:stop:step` takes each
/// value from start to stop (inclusive).
pub fn weight_grid(text: &str) -> Result<Vec<Weights>> {
    let mut axes: Vec<(String, Vec<String>)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            // Let the weights parser say what is wrong.
            return Ok(vec![
                text.parse::<Weights>()
                    .map_err(|e| EngineError::Invalid(e.to_string()))?,
            ]);
        };
        let values = match value.split(':').collect::<Vec<_>>().as_slice() {
            [_] => vec![value.to_owned()],
            [start, stop, step] => range_values(key, start, stop, step)?,
            _ => bail!("`{part}`: a weight is a number or start:stop:step, e.g. vis=0.2:0.6:0.2"),
        };
        // A name that is not a control, or one given twice, is refused before any grid
        // point is made.
        let hint = key
            .trim()
            .parse::<cosmos_core::Hint>()
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        if axes
            .iter()
            .any(|(k, _)| k.parse::<cosmos_core::Hint>().ok() == Some(hint))
        {
            return Err(EngineError::Invalid(
                cosmos_core::WeightsError::Duplicate(hint).to_string(),
            ));
        }
        axes.push((key.trim().to_owned(), values));
    }
    // The grid's size is known before it is made: a huge one is refused at once, not built.
    let size = axes
        .iter()
        .try_fold(1usize, |n, (_, values)| n.checked_mul(values.len()))
        .filter(|n| *n <= MAX_RUNS);
    if size.is_none() {
        bail!("--weights {text} makes more than {MAX_RUNS} runs");
    }
    let mut points: Vec<Vec<String>> = vec![Vec::new()];
    for (key, values) in &axes {
        let mut next = Vec::with_capacity(points.len() * values.len());
        for p in &points {
            for v in values {
                let mut q = p.clone();
                q.push(format!("{key}={v}"));
                next.push(q);
            }
        }
        points = next;
    }
    points
        .into_iter()
        .map(|p| {
            p.join(",")
                .parse::<Weights>()
                .map_err(|e| EngineError::Invalid(e.to_string()))
        })
        .collect()
}

fn range_values(key: &str, start: &str, stop: &str, step: &str) -> Result<Vec<String>> {
    let num = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .with_context(|| format!("`{v}` in {key}={start}:{stop}:{step} is not a number"))
    };
    let (a, b, d) = (num(start)?, num(stop)?, num(step)?);
    if d <= 0.0 {
        bail!("{key}={start}:{stop}:{step}: the step must be above 0");
    }
    if b < a {
        bail!("{key}={start}:{stop}:{step} is empty: the stop is below the start");
    }
    // Counted as a float first: a tiny step over a wide range is more values than any integer.
    let steps = ((b - a) / d + 1e-9).floor();
    if !steps.is_finite() || steps + 1.0 > MAX_RUNS as f64 {
        bail!("{key}={start}:{stop}:{step} makes more than {MAX_RUNS} values");
    }
    let n = steps as usize + 1;
    Ok((0..n)
        .map(|i| {
            let v = a + d * i as f64;
            // Decimal steps accumulate binary noise: print what the user meant.
            let text = format!("{v:.6}");
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        })
        .collect())
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SeedField {
    One(u32),
    Many(Vec<u32>),
    Text(String),
}

impl SeedField {
    pub fn as_list(&self) -> String {
        match self {
            SeedField::One(s) => s.to_string(),
            SeedField::Many(v) => v.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
            SeedField::Text(t) => t.clone(),
        }
    }
}

/// A TOML runs file: `[[run]]` tables, each read on its own so an error names which one (and
/// the line its table starts on).
fn read_toml(path: &Path, text: &str) -> Result<Vec<RunEntry>> {
    let invalid = |what: String| EngineError::Invalid(format!("{}{what}", path.display()));
    let mut table: toml::Table = toml::from_str(text)
        .map_err(|e| invalid(format!(" is not valid TOML: {}", e.message().trim_end())))?;
    let runs = table.remove("run");
    if let Some(key) = table.keys().next() {
        return Err(invalid(format!(
            ": `{key}` is not part of a runs file, which holds only [[run]] tables"
        )));
    }
    let Some(toml::Value::Array(runs)) = runs else {
        return Err(invalid(": no [[run]] tables".into()));
    };
    // Where each `[[run]]` header is, to point at it.
    let starts: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[run]]"))
        .map(|(i, _)| i + 1)
        .collect();
    runs.into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.try_into::<RunEntry>().map_err(|e| {
                let at = starts
                    .get(i)
                    .map(|l| format!(" (line {l})"))
                    .unwrap_or_default();
                invalid(format!(
                    " [[run]] {}{at}: {}",
                    i + 1,
                    e.message().trim_end()
                ))
            })
        })
        .collect()
}

/// Reads a runs file: `.toml` (`[[run]]` tables) or `.jsonl` (one object per line).
pub fn read_file(path: &Path) -> Result<Vec<RunEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        EngineError::Invalid(format!("cannot read the runs file {}: {e}", path.display()))
    })?;
    parse_runs(&text, path)
}

/// The entries of a runs file's text; `path` (its extension) says which format, and names
/// it in errors.
pub fn parse_runs(text: &str, path: &Path) -> Result<Vec<RunEntry>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let runs = match ext {
        "toml" => read_toml(path, text)?,
        "jsonl" | "ndjson" => {
            let mut runs = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                runs.push(serde_json::from_str::<RunEntry>(line).map_err(|e| {
                    EngineError::Invalid(format!("{} line {}: {e}", path.display(), i + 1))
                })?);
            }
            runs
        }
        _ => bail!(
            "{}: a runs file is .toml ([[run]] tables) or .jsonl (one JSON object per line)",
            path.display()
        ),
    };
    if runs.is_empty() {
        bail!("{} holds no runs", path.display());
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_come_from_lists_and_ranges() {
        assert_eq!(seeds(Some("7"), None, MAX_RUNS).ok(), Some(vec![7]));
        assert_eq!(
            seeds(Some("1, 2,3"), None, MAX_RUNS).ok(),
            Some(vec![1, 2, 3])
        );
        assert_eq!(
            seeds(None, Some("3..6"), MAX_RUNS).ok(),
            Some(vec![3, 4, 5, 6])
        );
        assert_eq!(seeds(None, Some("3..=4"), MAX_RUNS).ok(), Some(vec![3, 4]));
        for (list, range, needle) in [
            (Some("1,x"), None, "`x` in --seed"),
            (None, Some("5"), "FIRST..LAST"),
            (None, Some("6..2"), "is empty"),
            (
                None,
                Some("0..99999"),
                "makes 100000 runs, more than the 10000",
            ),
        ] {
            let e = seeds(list, range, MAX_RUNS)
                .expect_err("must fail")
                .to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn a_huge_grid_is_refused_before_it_is_built() {
        // Found by the `weights` fuzz target: two axes of 6,651 values each (44 million
        // points) were built before the size was checked, which took minutes.
        let text = "vis=5:670:.1,edge=5:670:.1";
        let began = std::time::Instant::now();
        let e = weight_grid(text).expect_err("too big").to_string();
        assert!(e.contains("makes more than 10000 runs"), "{e}");
        assert!(began.elapsed() < std::time::Duration::from_secs(1));
        // And: a control named again and again (each a range) made thousands of points of
        // hundreds of pairs before the duplicate was noticed.
        let many = "vis=0.2:1.2:0.2,edge=0,".repeat(40);
        let began = std::time::Instant::now();
        assert!(
            weight_grid(&many)
                .unwrap_err()
                .to_string()
                .contains("`vis` is given twice")
        );
        assert!(began.elapsed() < std::time::Duration::from_secs(1));
        // Found the same way: a range whose value count overflowed an integer.
        let wide = "vis=0.:0666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666662.4:0.2";
        assert!(
            weight_grid(wide)
                .unwrap_err()
                .to_string()
                .contains("makes more than 10000 values")
        );
        assert!(weight_grid("vis=0:1e300:1e-300").is_err());
        let bad = "hh=0.3,Seg\0\0\u{12}=5:670:.1,\0\0\0=0.3,Seg\0\0\u{12}=5:670:.1,\0\0\0\u{12}=";
        assert!(weight_grid(bad).is_err());
    }

    #[test]
    fn weight_ranges_make_a_grid() {
        let grid = weight_grid("vis=0.2:0.6:0.2,edge=0.5").expect("grid");
        let shown: Vec<String> = grid.iter().map(Weights::to_string).collect();
        assert_eq!(
            shown,
            ["vis=0.2,edge=0.5", "vis=0.4,edge=0.5", "vis=0.6,edge=0.5"]
        );
        let grid = weight_grid("vis=0:1:0.5,depth=0.1:0.2:0.1").expect("grid");
        assert_eq!(grid.len(), 6);
        for (text, needle) in [
            ("vis=0.6:0.2:0.2", "stop is below"),
            ("vis=0.2:0.6:0", "step must be above 0"),
            ("vis=a:1:0.1", "not a number"),
            ("vis=0.1:0.2", "start:stop:step"),
        ] {
            let e = weight_grid(text).expect_err(text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn runs_files_are_toml_or_json_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let toml_path = dir.path().join("s.toml");
        std::fs::write(
            &toml_path,
            "[[run]]\nprompt = \"harbour\"\nseed = [1, 2]\n\n[[run]]\nprompt = \"ps_x\"\nweights = \"edge=0.2:0.4:0.2\"\ntarget = \"gpu\"\n",
        )
        .expect("write");
        let runs = read_file(&toml_path).expect("toml");
        assert_eq!(runs.len(), 2);
        assert_eq!(
            runs[0].seed.as_ref().map(SeedField::as_list).as_deref(),
            Some("1,2")
        );
        assert_eq!(runs[1].target.as_deref(), Some("gpu"));

        let jsonl = dir.path().join("s.jsonl");
        std::fs::write(
            &jsonl,
            "{\"prompt\": \"a\", \"seed\": 3}\n\n{\"prompt\": \"b\", \"gpus\": 2}\n",
        )
        .expect("write");
        assert_eq!(read_file(&jsonl).expect("jsonl").len(), 2);

        std::fs::write(&jsonl, "{\"prompt\": \"a\", \"sead\": 3}\n").expect("write");
        let e = read_file(&jsonl).expect_err("typo").to_string();
        assert!(e.contains("line 1") && e.contains("sead"), "{e}");
        let e = read_file(&dir.path().join("s.csv"))
            .expect_err("csv")
            .to_string();
        assert!(e.contains("cannot read") || e.contains(".toml"), "{e}");
    }
}
